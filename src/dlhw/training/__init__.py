"""Training: the rules every loop shares (`rules`), the single-model loop (`loop`), the stacked
softmax engine (`stack`), and one run end to end (`run`: config -> data -> fit -> run folder)."""
