# One evaluation per defence (evaluate_unsecured, evaluate_madry, ...), then the report over all of them.
for evaluation_stage in pipeline.evaluation_stages():
    rule:
        name: evaluation_stage
        input: *stage_code(evaluation_stage), **stage_deps(evaluation_stage)
        output: **stage_products(evaluation_stage)
        params: command=stage_command(evaluation_stage)
        threads: stage_threads(evaluation_stage)
        resources: **stage_resources(evaluation_stage)
        log: stage_log(evaluation_stage)
        shell: SHELL


rule report:
    input: *stage_code("report"), **stage_deps("report")
    output: **stage_products("report")
    params: command=stage_command("report")
    threads: stage_threads("report")
    resources: **stage_resources("report")
    log: stage_log("report")
    shell: SHELL
