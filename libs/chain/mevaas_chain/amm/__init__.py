"""Pure AMM math: exact Uniswap V2 amounts, optimal cycle sizing, cycle enumeration, fast screening."""
