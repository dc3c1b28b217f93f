"""The autograder as course staff install it on Gradescope (``nox -s gradescope``).

``bundle.py`` writes ``autograder.zip`` (setup.sh, run_autograder, the staff's
``autograder.yaml``, the light environment's wheels pinned by hash); ``runner.py`` is what
run_autograder runs for each submission (the grader of ``nox -s grade``, a time limit, a
results.json that says what went wrong when grading fails: ``failure.py``); ``results.py``
checks a results.json against Gradescope's documented format (``results.schema.json``);
``local.py`` runs the bundle as Gradescope does, in a container built here.
``python -m hw5kit.gradescope --help`` lists the commands.
"""
