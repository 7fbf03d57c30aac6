"""The built-in models, one module each (registered in keras_models.BUILTIN)."""
