rule loss_net:
    input: *stage_code("loss_net"), **stage_deps("loss_net")
    output: **stage_products("loss_net")
    params: command=stage_command("loss_net")
    threads: stage_threads("loss_net")
    resources: **stage_resources("loss_net")
    log: stage_log("loss_net")
    shell: SHELL


rule train_denoiser:
    input: *stage_code("train_denoiser"), **stage_deps("train_denoiser")
    output: **stage_products("train_denoiser")
    params: command=stage_command("train_denoiser")
    threads: stage_threads("train_denoiser")
    resources: **stage_resources("train_denoiser")
    log: stage_log("train_denoiser")
    shell: SHELL


# The baselines and any defence module added under src/featdefense/defences/: one training rule each
# (train_madry, train_hgd, ...), taken from the stage graph like every other rule.
for defence_stage in pipeline.defence_training_stages():
    rule:
        name: defence_stage
        input: *stage_code(defence_stage), **stage_deps(defence_stage)
        output: **stage_products(defence_stage)
        params: command=stage_command(defence_stage)
        threads: stage_threads(defence_stage)
        resources: **stage_resources(defence_stage)
        log: stage_log(defence_stage)
        shell: SHELL
