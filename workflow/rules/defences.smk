rule loss_net:
    input: *stage_code("loss_net"), **stage_deps("loss_net")
    output: **stage_products("loss_net")
    params: values=stage_params("loss_net")
    threads: stage_threads("loss_net")
    log: stage_log("loss_net")
    shell: stage_shell("loss_net")


rule train_denoiser:
    input: *stage_code("train_denoiser"), **stage_deps("train_denoiser")
    output: **stage_products("train_denoiser")
    params: values=stage_params("train_denoiser")
    threads: stage_threads("train_denoiser")
    log: stage_log("train_denoiser")
    shell: stage_shell("train_denoiser")
