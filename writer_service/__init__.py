"""Consumes result batches from RabbitMQ and stores every ping in PostgreSQL once."""
