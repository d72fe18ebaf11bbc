"""Plain data that crosses module and process boundaries: evidence, results. Imports nothing of the grader but itself."""
