"""The paper's networks, one module each: lenet.Target (the classifier under attack),
autoencoder.Denoiser, vgg.LossNetwork. Import them from their modules: a stage's code is what it imports
(featdefense.pipeline.code_of), so this file imports nothing."""
