"""Run a synthesized scavenger on this machine, against DynamoDB Local."""
