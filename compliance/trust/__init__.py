"""Trust scoring: evidence, policies, rules and assessments of FUTURE-AI trustworthiness."""
