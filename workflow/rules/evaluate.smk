rule evaluate:
    input: *stage_code("evaluate"), **stage_deps("evaluate")
    output: **stage_products("evaluate")
    params: values=stage_params("evaluate")
    threads: stage_threads("evaluate")
    log: stage_log("evaluate")
    shell: stage_shell("evaluate")


rule report:
    input: *stage_code("report"), **stage_deps("report")
    output: **stage_products("report")
    params: values=stage_params("report")
    threads: stage_threads("report")
    log: stage_log("report")
    shell: stage_shell("report")
