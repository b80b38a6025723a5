rule train_target:
    input: *stage_code("train_target"), **stage_deps("train_target")
    output: **stage_products("train_target")
    params: command=stage_command("train_target")
    threads: stage_threads("train_target")
    resources: **stage_resources("train_target")
    log: stage_log("train_target")
    shell: SHELL
