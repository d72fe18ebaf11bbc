"""Pure judgement of evidence: the judge, the checks, similarity, leaderboards, Kaggle rules, plausibility flags."""
