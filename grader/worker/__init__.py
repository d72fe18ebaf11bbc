"""What runs inside the sandbox: evaluating a model, adapting inputs, the backends, the notebook runner and the channel it answers on."""
