"""The AWS stand-in: moto in server mode plus what moto lacks, one module per AWS service it plays (see server)."""
