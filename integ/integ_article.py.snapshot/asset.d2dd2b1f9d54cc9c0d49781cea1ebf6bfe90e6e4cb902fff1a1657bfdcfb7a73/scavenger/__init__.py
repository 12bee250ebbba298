"""The scavenger Lambda: stream records in, BatchWriteItem deletes out."""
