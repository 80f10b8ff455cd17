"""Offline evaluation of streamrec's recommenders: protocols, baselines, the worker replay."""
