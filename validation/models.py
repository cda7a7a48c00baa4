"""Validation runs and trust assessments arrive with the validation issues."""
