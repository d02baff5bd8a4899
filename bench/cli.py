"""The `hopbench` command line: a thin layer over plain functions nox and notebooks also call.

User errors print one line and exit non-zero; nothing here holds logic of its own.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, cast

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from bench.errors import HopbenchError, UserError

if TYPE_CHECKING:
    from bench.providers.base import Provider
    from bench.scenarios import ScenarioConfig

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Measure every hop from pod Ready to the first request it serves.")
cluster_app = typer.Typer(no_args_is_help=True, help="The embedded local cluster.")
app.add_typer(cluster_app, name="cluster")
console = Console(stderr=True)
out = stdout = Console()


def say(msg: str) -> None:
    console.print(msg, highlight=False)


def build_progress() -> tuple[Progress, Callable[[str, int, int], None]]:
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TextColumn("packages"), TimeElapsedColumn(),
                        console=console)
    tasks: dict[str, TaskID] = {}

    def cb(stage: str, done: int, total: int) -> None:
        if not tasks:  # shown only once a build actually runs
            progress.start()
        if stage not in tasks:
            tasks[stage] = progress.add_task(f"go build {stage}", total=total)
        progress.update(tasks[stage], completed=done, total=total)

    return progress, cb


@app.command()
def build(force: Annotated[bool, typer.Option(help="Rebuild even if cached.")] = False,
          mesh: Annotated[Optional[str], typer.Option(
              help="Also build a mesh's tools: istio (pilot-discovery, meshclient).")] = None,
          ) -> None:
    """Build the pinned Kubernetes, agnhost and etcd binaries into the cache."""
    from bench.build import gobuild as b
    from bench.mesh import registry as meshes

    mesh = meshes.check(mesh) or None
    progress, cb = build_progress()
    with progress:
        tools = b.build(cb, force=force)
        if mesh:
            from bench.build import meshbuild

            mesh_tools = meshbuild.build_mesh(cb, force=force)
    shown = tools.as_dict() | ({"mesh": mesh_tools.as_dict()} if mesh else {})
    out.print(json.dumps(shown, indent=2))


@app.command()
def doctor(fix: Annotated[bool, typer.Option(help="apt-get install what is missing.")] = False
           ) -> None:
    """Check the host's prerequisites for the local cluster."""
    from bench.cluster import doctor as d

    if fix:
        installed = d.fix()
        say("installed: " + (", ".join(installed) if installed else "nothing needed"))
    table = Table("check", "result", "detail")
    failed = 0
    for c in d.checks():
        mark = "[green]pass" if c.ok else ("[red]FAIL" if c.required else "[yellow]absent")
        failed += (not c.ok) and c.required
        table.add_row(c.name, mark, c.detail)
    out.print(table)
    if failed:
        raise typer.Exit(1)


@app.command()
def run(
    cluster: Annotated[Optional[str], typer.Option(
        help="Local cluster to use: brought up (and removed after) if none of that name "
             "exists; refused if it is not healthy.")] = None,
    kubeconfig: Annotated[Optional[str], typer.Option(help="Any cluster's kubeconfig.")] = None,
    nodes: Annotated[int, typer.Option(help="Nodes, when a local cluster is created.")] = 2,
    proxy_mode: Annotated[Optional[str], typer.Option(
        help="Modes to measure in turn, comma-separated (default: iptables,nftables on a "
             "local cluster, the cluster's own mode with --kubeconfig).")] = None,
    scenario: Annotated[str, typer.Option(
        help="Comma-separated: scale-up, delete, crash, readiness-flap, proxy-restart; "
             "NAME:K records K trials of NAME per mode, spread over the cycles (e.g. "
             "proxy-restart:2 at scale).")] = "scale-up,delete",
    trials: Annotated[int, typer.Option(
        help="Cycles per mode; each records one trial per transition of --scenario.")] = 100,
    parallel: Annotated[int, typer.Option(help="Services measured in parallel.")] = 1,
    spacing_ms: Annotated[float, typer.Option(help="Pause between trials.")] = 0.0,
    trial_timeout: Annotated[float, typer.Option(help="Seconds before a trial is censored.")
                             ] = 30.0,
    probe_interval_ms: Annotated[float, typer.Option(
        help="Prober interval while a transition can show (from a pod's Ready or a "
             "removal's trigger to the trial's end).")] = 5.0,
    probe_idle_interval_ms: Annotated[float, typer.Option(
        help="Prober interval between those windows.")] = 100.0,
    component_arg: Annotated[Optional[list[str]], typer.Option(
        help="COMPONENT:--flag=value for a created local cluster.")] = None,
    out: Annotated[Optional[str], typer.Option(help="Run directory (default results/<ts>).")
                   ] = None,
    resume: Annotated[Optional[str], typer.Option(
        help="Continue an interrupted run dir, with the modes, scenarios, trials and "
             "intervals it was started with.")] = None,
    keep_cluster: Annotated[bool, typer.Option(help="Keep a cluster this run created.")] = False,
    target_image: Annotated[Optional[str], typer.Option(
        help="agnhost image for the measured pods (real clusters: a pullable one, e.g. "
             "registry.k8s.io/e2e-test-images/agnhost:2.56).")] = None,
    agent_image: Annotated[Optional[str], typer.Option(
        help="--kubeconfig: the agent image (default: on a cluster hopbench created, "
             "built and loaded into its nodes; elsewhere the locally built tag).")] = None,
    max_skew: Annotated[Optional[float], typer.Option(
        help="--kubeconfig: refuse when a node's clock offset is less certain than MS.")
                        ] = None,
    background_services: Annotated[str, typer.Option(
        help="Background Services before the trials; comma-separated counts run a sweep, "
             "the same trials at each (e.g. 0,1000,5000).")] = "0",
    endpoints_per_service: Annotated[str, typer.Option(
        help="Endpoints of each background Service.")] = "2",
    churn: Annotated[str, typer.Option(
        help="Background endpoint changes per second while the trials run.")] = "0",
    mesh: Annotated[Optional[str], typer.Option(
        help="Measure a mesh's discovery path beside kube-proxy's, on the same trials: "
             "istio (a local cluster is created with istiod; with --kubeconfig the "
             "cluster's own istiod is measured, never installed).")] = None,
    component_env: Annotated[Optional[list[str]], typer.Option(
        help="COMPONENT:NAME=VALUE for a created local cluster (e.g. "
             "istiod:PILOT_DEBOUNCE_AFTER=500ms).")] = None,
) -> None:
    """Measure every hop, per node, for each kube-proxy mode; write a run directory."""
    from pathlib import Path

    from bench import runner, runopts
    from bench.cluster.local.spec import check_mode, parse_component_args, parse_component_env
    from bench.mesh import registry as meshes
    from bench.results.point import Point
    from bench.results.store import load_hops, load_meta, read_provenance
    from bench.scenarios import ScenarioConfig, parse_counts, parse_scenarios
    from bench.summary import instruments_table, render, summary_table

    # every option is checked here, before a cluster, agent or directory exists
    given = proxy_mode or ("" if kubeconfig else "iptables,nftables")
    modes = tuple(check_mode(m.strip()) for m in given.split(",") if m.strip())
    if not modes and not kubeconfig:
        raise UserError("--proxy-mode: name at least one of iptables, nftables, ipvs")
    sc_cfg = ScenarioConfig(scenarios=parse_scenarios(scenario), trials=trials,
                            counts=parse_counts(scenario),
                            parallel=parallel, spacing_s=spacing_ms / 1000,
                            trial_timeout_s=trial_timeout, probe_interval_ms=probe_interval_ms,
                            probe_idle_interval_ms=probe_idle_interval_ms)
    runopts.check_scenario(sc_cfg)
    _check_target(cluster, kubeconfig, nodes, agent_image, max_skew)
    points = runopts.parse_points(background_services, endpoints_per_service, churn)
    components = parse_component_args(component_arg or [])
    envs = parse_component_env(component_env or [])
    mesh_name = meshes.check(mesh)  # with --kubeconfig: the cluster's own istiod, or refused
    if resume:  # the run's own options, not this command line's defaults
        if out:
            raise UserError("--resume continues the run in its own directory: drop --out")
        runopts.check_resume_dir(Path(resume))
        modes, sc_cfg, cluster = _resumed(load_meta(resume), cluster, kubeconfig)
        runopts.check_scenario(sc_cfg)
        points = read_provenance(resume).points or (Point(),)
        probe_interval_ms = sc_cfg.probe_interval_ms
        say(f"resuming with the run's options: {', '.join(modes)}; "
            f"{', '.join(sc_cfg.scenarios)}; {sc_cfg.trials} cycles per mode")
    out_dir = Path(resume or out or runner.default_out_dir())
    if not resume:
        runopts.check_out_dir(out_dir)
    runopts.check_fits(points, local=not kubeconfig, parallel=sc_cfg.parallel)
    provider = _provider(cluster, kubeconfig, nodes, modes[0] if modes else "", components,
                         modes=modes, agent_image=agent_image, max_skew_ms=max_skew,
                         probe_interval_ms=probe_interval_ms, mesh=mesh_name,
                         component_env=envs)
    if not modes:  # --kubeconfig without --proxy-mode: measure what the cluster runs
        modes = (provider.proxy_mode(),)
        say(f"measuring the cluster's kube-proxy mode: {modes[0]}")
    cfg = runner.RunConfig(modes=modes, out_dir=out_dir, resume=bool(resume),
                           target_image=target_image or "", scenario=sc_cfg, points=points)
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                        TimeElapsedColumn(), console=console)
    total = len(points) * len(modes) * cfg.scenario.trials_per_mode
    task = progress.add_task("trials", total=total, stats="")
    fills: dict[str, TaskID] = {}

    def on_progress(p: runner.Progress) -> None:
        stats = (f"e2e p50 {p.quantile(0.5):.0f} ms  p99 {p.quantile(0.99):.0f} ms"
                 if p.e2e_ms else "")
        stats += f"  censored {p.censored}" if p.censored else ""
        where = f"{p.point} {p.mode}" if p.point else p.mode
        progress.update(task, completed=p.done, description=where, stats=stats)
        if not console.is_terminal and p.done % 20 == 0:  # logs (CI, nox) still see progress
            say(f"{where}: {p.done}/{p.total} trials {stats}")

    def on_fill(label: str, done: int, total: int) -> None:
        if label not in fills:
            fills[label] = progress.add_task(f"fill {label}", total=total, stats="objects")
        progress.update(fills[label], completed=done, total=total)

    try:
        with progress:
            out_dir = runner.run(provider, cfg, say=say, on_progress=on_progress,
                                 on_fill=on_fill)
    finally:
        if not keep_cluster or kubeconfig:  # a kubeconfig run always removes its agents
            provider.close()
    stdout.print(render(summary_table(load_hops(out_dir)), title=f"hopbench {out_dir}",
                        width=stdout.width))
    if (inst := instruments_table(load_meta(out_dir), width=stdout.width)) is not None:
        stdout.print(inst)
    say(f"results in {out_dir} (report: hopbench report {out_dir})")


def _resumed(meta: dict[str, Any], cluster: str | None, kubeconfig: str | None
             ) -> tuple[tuple[str, ...], ScenarioConfig, str | None]:
    """Modes, scenario options and local cluster of the run being resumed (run.json)."""
    import dataclasses

    from bench.scenarios import ScenarioConfig

    by_kubeconfig = meta.get("provider") == "kubeconfig"
    if by_kubeconfig and not kubeconfig:
        raise UserError("this run measured a cluster through a kubeconfig: resume it with "
                        "--kubeconfig PATH")
    if kubeconfig and not by_kubeconfig:
        raise UserError(f"this run measured the local cluster {meta.get('cluster')!r}: "
                        "resume it without --kubeconfig")
    stored = dict(meta.get("scenario_config") or {})
    known = {f.name for f in dataclasses.fields(ScenarioConfig)}
    stored = {k: v for k, v in stored.items() if k in known}
    stored["scenarios"] = tuple(stored.get("scenarios") or meta.get("scenarios") or ())
    modes = tuple(str(m) for m in meta.get("proxy_modes") or ())
    if not modes or not stored["scenarios"]:
        raise UserError("run.json names no proxy modes or scenarios: nothing to resume")
    return modes, ScenarioConfig(**stored), cluster or meta.get("cluster")


def _check_target(cluster: str | None, kubeconfig: str | None, nodes: int,
                  agent_image: str | None, max_skew: float | None) -> None:
    """The options that choose the cluster: consistent, and each in range."""
    from bench import runopts

    if cluster and kubeconfig:
        raise UserError("give --cluster or --kubeconfig, not both")
    if kubeconfig:  # the file itself is read (and refused) before anything is created
        runopts.check_max_skew(max_skew)
        return
    if agent_image or max_skew is not None:
        raise UserError("--agent-image and --max-skew apply to --kubeconfig runs only")
    runopts.check_cluster_name(cluster or "hopbench")
    runopts.check_nodes(nodes)


def _provider(cluster: str | None, kubeconfig: str | None, nodes: int, mode: str,
              component_args: dict[str, list[str]], modes: tuple[str, ...] = (),
              agent_image: str | None = None, max_skew_ms: float | None = None,
              probe_interval_ms: float = 5.0, mesh: str = "",
              component_env: dict[str, dict[str, str]] | None = None) -> Provider:
    if cluster and kubeconfig:
        raise UserError("give --cluster or --kubeconfig, not both")
    if kubeconfig:
        from bench.providers.kubeconfig.provider import KubeconfigProvider

        own = None
        if not agent_image:  # a cluster hopbench created gets the image built and loaded
            from bench.cluster import imageload

            own = imageload.recognise(kubeconfig)
            if own and not mesh:
                agent_image = imageload.agent_image_for(own, say=say)
        # no --proxy-mode: no mode to check; the provider reads the cluster's own
        from bench.build import agentimage

        def mesh_image() -> str:  # with the mesh client; once preflight found istiod
            if own is None:
                return agentimage.default_ref(mesh=True)
            image = agentimage.build(say=say, mesh=True)
            imageload.load_archive(own, image.archive, say)
            return image.ref

        image: str | Callable[[], str] = agent_image or (
            mesh_image if mesh else agentimage.default_ref())
        return KubeconfigProvider.open(kubeconfig, agent_image=image,
                                       max_skew_ms=max_skew_ms, modes=modes,
                                       probe_interval_ms=probe_interval_ms, say=say,
                                       mesh=mesh)
    if agent_image or max_skew_ms is not None:
        raise UserError("--agent-image and --max-skew apply to --kubeconfig runs only")
    from bench.cluster.local.cluster import ensure
    from bench.providers.local import LocalProvider

    spec, created = ensure(cluster or "hopbench", nodes, mode, component_args, say=say,
                           mesh=mesh, component_env=component_env)
    return LocalProvider(spec, owned=created, measure_mesh=bool(mesh))


@app.command()
def show(run_dir: str) -> None:
    """Print the summary table of a stored run (a killed one too: its journal is read)."""
    from bench.results.reader import read_run
    from bench.results.store import writer_pid
    from bench.summary import instruments_table, render, summary_table

    run = read_run(run_dir)
    meta = run.meta
    say(f"{run_dir}: status {run.status}, provider {meta.get('provider')}, "
        f"Kubernetes {meta.get('kubernetes_version')}, {meta.get('node_count')} node(s)")
    if run.status != "finished":
        say(_unfinished(run_dir, run.status, str(meta.get("interrupt_reason") or ""),
                        writer_pid(run_dir), run.trials, run.from_journal))
    stdout.print(render(summary_table(run.hops), title=run_dir, width=stdout.width))
    if (inst := instruments_table(meta, width=stdout.width)) is not None:
        stdout.print(inst)


def _unfinished(run_dir: str, status: str, reason: str, pid: str | None, trials: int,
                from_journal: int) -> str:
    """The line `show` prints for a run that has not finished."""
    journal = (f", {from_journal} of them only in events.jsonl (the parquet snapshots lag)"
               if from_journal else "")
    holds = f"it holds {trials} complete trial(s){journal}"
    if pid is not None:
        return f"[yellow]this run has not finished[/]: still running (pid {pid}); {holds} so far"
    how = {"running": "killed (run.json still says running, no process holds it)",
           "interrupted": f"interrupted ({reason or 'no reason recorded'})"}.get(
        status, f"status {status!r}")
    return (f"[yellow]this run did not finish[/]: {how}; {holds}; continue it with "
            f"`hopbench run --resume {run_dir}`")


@app.command()
def reassemble(run_dir: str) -> None:
    """Re-derive hops.parquet from the run's raw events with this version's timeline rules.

    The events are those `show` reads: events.parquet plus every complete trial of the
    journal; events.parquet is rewritten with them too.
    """
    from bench.results.reader import read_run
    from bench.results.store import write_events, write_hops
    from bench.timeline import assemble

    path = Path(run_dir)
    run = read_run(path)
    hops = assemble(run.events)
    if run.from_journal:
        write_events(path, run.events)
    write_hops(path, hops)
    say(f"{path / 'hops.parquet'}: {len(hops)} hop rows of {run.trials} trial(s) from the "
        "raw events" + (f" ({run.from_journal} trial(s) read from events.jsonl)"
                        if run.from_journal else ""))


@app.command()
def report(run_dirs: list[str],
           out_dir: Annotated[Optional[str], typer.Option("--out", help="Output dir.")] = None,
           allow_mixed: Annotated[bool, typer.Option(help="Merge runs whose provenance differs.")
                                  ] = False) -> None:
    """Write plots, summary.csv and report.html for one or more runs."""
    from analysis.report import write_report

    target = out_dir or str(Path(run_dirs[0]) / "report")
    paths = write_report(run_dirs, target, allow_mixed=allow_mixed)
    say(f"report written: {paths.get('html', target)}")


@cluster_app.command("up")
def cluster_up(
    name: Annotated[str, typer.Option(help="Cluster name.")] = "hopbench",
    nodes: Annotated[int, typer.Option(help="Number of nodes.")] = 2,
    proxy_mode: Annotated[str, typer.Option(help="iptables, nftables or ipvs.")] = "iptables",
    component_arg: Annotated[Optional[list[str]], typer.Option(
        help="COMPONENT:--flag=value, repeatable.")] = None,
    provider: Annotated[str, typer.Option(help="local (default) or kind.")] = "local",
    mesh: Annotated[Optional[str], typer.Option(
        help="Add a mesh's control plane: istio (istiod, proxyless gRPC clients).")] = None,
    component_env: Annotated[Optional[list[str]], typer.Option(
        help="COMPONENT:NAME=VALUE environment, repeatable "
             "(e.g. istiod:PILOT_DEBOUNCE_AFTER=500ms).")] = None,
) -> None:
    """Create a cluster: local (control plane plus N node namespaces) or kind."""
    from bench.cluster import lifecycles
    from bench.mesh import registry as meshes

    lifecycle = lifecycles.get(provider)
    mesh_name = meshes.check(mesh)
    progress, cb = build_progress()  # starts only if the Go build has to run first
    try:
        extra: dict[str, Any] = {"mesh": mesh_name} if mesh_name else {}
        if component_env:
            extra["component_env"] = component_env
        kubeconfig = lifecycle.up(name, nodes, proxy_mode, component_arg or [], say=say,
                                  build_progress=cb, **extra)
    finally:
        progress.stop()
    out.print(str(kubeconfig))


@cluster_app.command("down")
def cluster_down(name: Annotated[str, typer.Option(help="Cluster name.")] = "hopbench",
                 provider: Annotated[str, typer.Option(help="local or kind.")] = "local"
                 ) -> None:
    """Remove a cluster and everything it created (idempotent)."""
    from bench.cluster import lifecycles

    say(lifecycles.get(provider).down(name, say=say))


@cluster_app.command("status")
def cluster_status(name: Annotated[Optional[str], typer.Argument()] = None) -> None:
    """List local clusters and whether their daemons are alive."""
    from bench.cluster.local import live

    rows = live.status(name)
    table = Table("name", "nodes", "proxy mode", "status", "RSS per node (MiB)", "kubeconfig")
    for r in rows:
        st = str(r["status"]) + (f" (dead: {', '.join(r['dead'])})" if r["dead"] else "")  # type: ignore[arg-type]
        node_rss = cast(dict[str, float], r["node_rss_mib"])
        rss = ", ".join(f"{k} {v:.0f}" for k, v in node_rss.items())
        table.add_row(str(r["name"]), str(r["nodes"]), str(r["proxy_mode"]), st, rss,
                      str(r["kubeconfig"]))
    out.print(table if rows else "no local clusters")


@cluster_app.command("kubeconfig")
def cluster_kubeconfig(name: Annotated[str, typer.Argument()] = "hopbench") -> None:
    """Print the path of a cluster's admin kubeconfig."""
    from bench.cluster.local.spec import ClusterSpec

    out.print(str(ClusterSpec.load(name).kubeconfig))


@cluster_app.command("exec", context_settings={"allow_extra_args": True,
                                               "ignore_unknown_options": True})
def cluster_exec(ctx: typer.Context, name: str, node: str) -> None:
    """Run a command in a node's network namespace: cluster exec NAME NODE -- CMD..."""
    from bench.cluster.local import live

    if not ctx.args:
        raise UserError("give a command after --, e.g. cluster exec hopbench n1 -- ip a")
    raise typer.Exit(live.exec_in(name, node, list(ctx.args)))


@cluster_app.command("load-image")
def cluster_load_image(
    name: str, archive: str,
    provider: Annotated[str, typer.Option(help="local or kind.")] = "local") -> None:
    """Import an image archive (OCI layout or `docker save`) into every node's containerd."""
    from bench.cluster import imageload

    imageload.load_archive(imageload.OwnCluster(provider, name), Path(archive), say=say)


@cluster_app.command("set-proxy-mode")
def cluster_set_proxy_mode(name: str, mode: str,
                           provider: Annotated[str, typer.Option(help="local or kind.")
                                               ] = "local") -> None:
    """Switch kube-proxy on every node of a live cluster and wait for its first sync."""
    from bench.cluster import lifecycles

    lifecycles.get(provider).set_proxy_mode(name, mode, say=say)


def say_error(exc: BaseException) -> None:
    """A user error as one line, verbatim: its text is neither markup nor emoji codes
    (`proxy-restart:x: ...` stays as written)."""
    from rich.markup import escape

    console.print(f"[red]hopbench: error:[/red] {escape(str(exc))}", highlight=False,
                  soft_wrap=True, emoji=False)


def main() -> None:
    try:
        app()
    except HopbenchError as exc:
        code = getattr(exc, "exit_code", 1)
        say_error(exc)
        sys.exit(code)
    except ValueError as exc:  # analysis errors (bad run dirs, provenance) are ValueErrors
        from analysis.errors import AnalysisError

        if not isinstance(exc, AnalysisError):
            raise
        say_error(exc)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("hopbench: interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
