"""What both the tests and the benchmarks use to stand in for other tools (the article's script,
listings as each tool writes them); not part of the product."""
