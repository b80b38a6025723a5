# One rule per stage of the graph (src/featdefense/pipeline.py), every one alike: the stage's code and
# inputs (and its params file), its products, its command, threads, resources and log. A defence module
# added under src/featdefense/defences/ brings its stages here without a line of its own.
for stage_name in pipeline.STAGES:

    rule:
        name:
            stage_name
        input:
            *stage_code(stage_name),
            **stage_deps(stage_name),
        output:
            **stage_products(stage_name),
        log:
            stage_log(stage_name),
        threads: stage_threads(stage_name)
        resources:
            **stage_resources(stage_name),
        params:
            command=stage_command(stage_name),
        shell:
            SHELL
