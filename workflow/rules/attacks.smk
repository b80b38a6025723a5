rule attack:
    input: *stage_code("attack"), **stage_deps("attack")
    output: **stage_products("attack")
    params: command=stage_command("attack")
    threads: stage_threads("attack")
    resources: **stage_resources("attack")
    log: stage_log("attack")
    shell: SHELL
