"""What the teacher and the students give: rubrics, submissions, hidden-test bundles, data sets, image folders, the run's folder."""
