# params.yaml is Snakemake's config; it is validated against the one schema before anything runs.
from featdefense import params as fd_params, pipeline, runs
from snakemake.utils import validate

fd_params.validate(config, "params.yaml")  # every problem, each with its key, value and what is allowed
validate(config, str(fd_params.SCHEMA_PATH), set_default=False)
pipeline.check_dvc_yaml()  # both engines run the same graph: a plug-in module added needs dvc.yaml re-rendered
if workflow.is_main_process:  # not in a cluster job: one process keeps file times and params files
    runs.reconcile(config)  # params files where values changed; file times of current outputs in order


wildcard_constraints:
    dataset="|".join(pipeline.WILDCARD_VALUES["dataset"]),
    attack="|".join(pipeline.WILDCARD_VALUES["attack"]),


def stage_code(name):
    return pipeline.STAGES[name].code_paths


def stage_deps(name):
    """Its input files, and the file of its param values: a param change makes that input newer."""
    stage = pipeline.STAGES[name]
    return {**stage.deps, "params": runs.params_file(stage)}


REPORTED = ("data/reports/", "data/plots/", "data/metrics/")  # what `snakemake --report` shows


def stage_products(name):
    stage = pipeline.STAGES[name]

    def wrap(key, path):
        if key in stage.directories:
            return directory(path)
        if path.startswith(REPORTED):
            return report(
                path,
                category=path.split("/")[1],
                subcategory="{dataset}",
                labels={"stage": name, "file": path.rsplit("/", 1)[1]},
            )
        return path

    return {k: wrap(k, v) for k, v in stage.products.items()}


def stage_log(name):
    stage = pipeline.STAGES[name]
    return "logs/" + "/".join([name] + [f"{{{w}}}" for w in stage.wildcards]) + ".log"


def stage_command(name):
    """The stage's command line for one job (a params function: rules made in a loop bind it here, when
    they are defined, where a `shell:` expression would be evaluated only when the job runs)."""
    stage = pipeline.STAGES[name]
    return lambda wildcards: stage.cmd.format(**dict(wildcards.items()))


SHELL = "{params.command} > {log} 2>&1"  # every rule's shell: its stage command, output to its log


def stage_threads(name):
    """CPU threads the stage uses (params.yaml `threads`), so the scheduler does not oversubscribe."""
    return pipeline.job_threads(pipeline.STAGES[name], config)


def stage_resources(name):
    """Memory, run time and GPUs a job asks for (params.yaml `resources`): the slurm profile's sbatch options."""
    return pipeline.job_resources(pipeline.STAGES[name], config)
