"""The paper's other networks, one module each: autoencoder.Denoiser, vgg.LossNetwork (the target, the
classifier under attack, is a plug-in: featdefense.targets). Import them from their modules: a stage's code
is what it imports (featdefense.pipeline.code_of), so this file imports nothing."""
