"""Protected transactions: a client's signed transaction sent as a private bundle, resent every
block until included or past its last block."""
