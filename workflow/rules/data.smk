rule download:
    input: *stage_code("download"), **stage_deps("download")
    output: **stage_products("download")
    params: command=stage_command("download")
    threads: stage_threads("download")
    resources: **stage_resources("download")
    log: stage_log("download")
    shell: SHELL


rule prepare:
    input: *stage_code("prepare"), **stage_deps("prepare")
    output: **stage_products("prepare")
    params: command=stage_command("prepare")
    threads: stage_threads("prepare")
    resources: **stage_resources("prepare")
    log: stage_log("prepare")
    shell: SHELL
