"""Helpers for Assignment 3, Question 1: a simple classifier on Fashion-MNIST."""
