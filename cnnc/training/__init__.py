"""Training: reverse-mode differentiation of the IR (autodiff), losses, optimizers, data, the loop.

    import cnnc
    result = cnnc.train("examples/lenet5.cnn", "digits.npz", cnnc.TrainConfig(epochs=5, lr=0.05))
    result.network.save_params("lenet5.npz")
"""
