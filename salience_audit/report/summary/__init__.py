"""Summary statistics of an audit folder (summary.json): the numbers, no presentation."""
