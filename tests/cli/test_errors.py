"""Every bad input ends in one line and the right exit status, before any work, and nothing is written anywhere but
``--out``: the cases a user reported, then generated bad arguments (hypothesis)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iftgym.cli import main
from iftgym.io import MANIFEST

TINY_COMPARE = ["--seeds", "2", "--steps", "2", "--algos", "sft"]
TINY_LM = ["--steps", "2", "--seeds", "1", "--train-size", "4", "--test-size", "2", "--task-arg", "digits=1",
           "--batch-size", "2", "--n-layer", "1", "--n-head", "2", "--n-embd", "8"]  # fmt: skip


def run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    status = main(args)
    return status, capsys.readouterr().err


def assert_one_line(err: str) -> None:
    assert err.count("\n") == 1 and err.startswith("iftgym: ") and "Traceback" not in err, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", "-0.1"], "lr=-0.1 is out of range"),
        (["--lr", "0"], "lr=0.0 is out of range"),
        (["--lr", "nan"], "lr=nan is out of range: expected a finite number"),
        (["--lr", "inf"], "lr=inf is out of range: expected a finite number"),
        (["--algos", "sft,dpo", "--set", "dpo.beta=Infinity"], "dpo.beta=inf is out of range"),
        (["--success-rate", "0.5"], "--success-rate has no effect without --slippery"),
        (["--set", "ift.lam=0.3"], "hyper-parameters are set for rule 'ift', which no algorithm runs"),
        (["--stage-lr", "dpo=1e-3"], "a learning rate is set for rule 'dpo', which no algorithm runs"),
        (["--map", "4x4", "--random-maps", "2"], "--map and --random-maps exclude each other"),
        (["--size", "5"], "--size has no effect without --random-maps"),
        (["--sb3-timesteps", "10"], "--sb3-timesteps has no effect without sb3-ppo"),
        (["--no-cache"], "--no-cache has no effect without sb3-ppo"),
        (["--workers", "-1"], "--workers=-1 is out of range"),
        (["--workers", "257"], "--workers=257 is out of range: expected at most 256"),
        (["--algos", "sft,sft"], "algorithm 'sft' is listed twice"),
        (["--baseline", "kto"], "baseline='kto' is not supported: expected one of 'sft', 'uniform'"),
        (["--algos", "sft,ift(lam=2)"], "lam=2 is out of range"),
        (["--algos", "ift(lam=0"], "variant 'ift(lam=0' is malformed"),
        (["--algos", "sft,ift(lam=0),ift(lam=0)"], "algorithm 'ift(lam=0)' is listed twice"),
        (["--map", "4x4", "4x4"], "map '4x4' is listed twice"),
        (["--out", ""], "output directory '' is empty"),
        (["--seeds", "100000000000"], "seeds=100000000000 is out of range: expected at most 100000"),
        (["--hidden", "1000000000"], "more than this machine's"),
        (["--steps", "2.5"], "invalid int value: '2.5'"),
        (["--map", "[/]x"], "unknown map '[/]x'"),
    ],
)
def test_reported_compare_inputs_are_refused_before_any_work(args, message, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    status, err = run(["compare", *TINY_COMPARE, *args, "--out", str(out)] if "--out" not in args
                      else ["compare", *TINY_COMPARE, *args], capsys)  # fmt: skip
    assert status == 2 and message in err, err
    assert_one_line(err)
    assert not out.exists()  # not even an empty folder


def test_a_diverging_run_fails_in_one_line_and_keeps_the_previous_outputs(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["compare", *TINY_COMPARE, "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    for command in (["compare", *TINY_COMPARE, "--lr", "1e30"], ["lm", *TINY_LM, "--lr", "1e30"]):
        status, err = run([*command, "--out", str(out)], capsys)
        assert status == 1 and "training diverged: the loss of rule 'sft' (stage 1 of 1) is not finite" in err
        assert f"{out} was left as it was" in err
        assert_one_line(err)
        after = {p.name: p.read_bytes() for p in out.iterdir()}
        live = after.pop("metrics.live.jsonl", None)  # lm's live log: the step this run measured before diverging
        assert after == before and (live is None) == (command[0] == "compare")


def test_map_files_with_markup_or_paths_name_figures_inside_out(tmp_path, capsys) -> None:
    maps = tmp_path / "a[/b]"
    maps.mkdir(parents=True)
    (maps / "c.txt").write_text("SFFF\nFHFH\nFFFG\n")
    (tmp_path / "m[red]x.txt").write_text("SFFG\n")
    out = tmp_path / "out"
    status = main(["compare", *TINY_COMPARE, "--map", str(maps / "c.txt"), str(tmp_path / "m[red]x.txt"),
                   "--out", str(out)])  # fmt: skip
    text = capsys.readouterr().out
    assert status == 0 and f"{maps / 'c.txt'}:" in text and "m[red]x.txt:" in text  # printed as given
    assert sorted(p.name for p in maps.iterdir()) == ["c.txt"]  # nothing next to the map files
    names = {p.name for p in out.iterdir()}
    assert {"c-preference.png", "m-red-x-preference.png", "results.json", MANIFEST} <= names


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plot", "{file}"], "is damaged: config is not an object"),
        (["bias", "--png", "{dir}/x.jpg", "--steps", "2"], "does not end in .png"),
        (["bias", "--lam", "nan"], "lam=nan is out of range"),
        (["solve", "--success-rate", "0.5"], "--success-rate has no effect without --slippery"),
        (["lm", *TINY_LM, "--seeds", "100000000000"], "seeds=100000000000 is out of range"),
        (["lm", *TINY_LM, "--n-embd", "4000000"], "more than this machine's"),
        (["lm", *TINY_LM, "--device", "tpu"], "device='tpu' is not a device"),
    ],
)
def test_other_commands_refuse_bad_input_in_one_line(args, message, tmp_path, capsys) -> None:
    damaged = tmp_path / "results.json"
    damaged.write_text(json.dumps({"schema": "iftgym.compare/1"}))
    args = [a.format(file=damaged, dir=tmp_path) for a in args]
    status, err = run(args, capsys)
    assert status == 2 and message in err, err
    assert_one_line(err)


def test_a_single_seed_has_no_interval_and_the_results_are_strict_json(tmp_path, capsys) -> None:
    out = tmp_path / "lm"
    assert main(["lm", *TINY_LM, "--algo", "sft", "--out", str(out)]) == 0
    assert "(1 seed, no CI)" in capsys.readouterr().out
    text = (out / "results.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["maps"][0]["algorithms"]["sft"]["summary"]["greedy_test"]["ci95_low"] is None


# -- generated bad arguments --------------------------------------------------------------------------------
BAD_VALUES = ["-1", "0", "nan", "inf", "-inf", "1e30", "2.5", "", "x", "[/]", "[red]", "../..", "sft+", "+", ",",
              "ift.lam", "ift.lam=nan", "dpo=true", "\u00e9\u0301", "9" * 30, "true", "None"]  # fmt: skip
FLAGS = {
    "compare": (TINY_COMPARE, ["--map", "--algos", "--seeds", "--steps", "--lr", "--hidden", "--success-rate",
                               "--gamma", "--demos", "--random-maps", "--size", "--set", "--stage-lr", "--plugin"]),
    "lm": (TINY_LM, ["--task", "--algo", "--steps", "--seeds", "--lr", "--batch-size", "--n-layer", "--n-head",
                     "--n-embd", "--device", "--data", "--train-size", "--task-arg", "--reward", "--eval-every",
                     "--set", "--stage-lr", "--seed"]),
    "bias": (["--steps", "2"], ["--map", "--algo", "--steps", "--seed", "--gamma", "--lam", "--success-rate"]),
    "solve": ([], ["--map", "--gamma", "--success-rate"]),
}  # fmt: skip


@st.composite
def bad_command(draw) -> list[str]:
    command = draw(st.sampled_from(sorted(FLAGS)))
    base, flags = FLAGS[command]
    pairs = draw(st.lists(st.tuples(st.sampled_from(flags), st.sampled_from(BAD_VALUES)), min_size=1, max_size=3))
    return [command, *base, *(item for pair in pairs for item in pair)]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=bad_command())
def test_generated_bad_arguments_end_in_one_line_and_write_only_inside_out(args, tmp_path_factory, capsys) -> None:
    home = tmp_path_factory.mktemp("cwd")
    out = home / "out"
    before = os.getcwd()
    os.chdir(home)
    try:
        status = main([*args, "--out", str(out)] if args[0] in ("compare", "lm") else args)
    finally:
        os.chdir(before)
    err = capsys.readouterr().err
    assert status in (0, 1, 2), (args, status, err)
    if status:
        assert_one_line(err)
    written = {p for p in home.rglob("*")} - {out} - set(out.rglob("*"))
    assert not written, (args, written)


# -- interrupts ---------------------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """The CPU seconds (user + system) process ``pid`` has used so far (Linux's /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize(("signum", "status", "said"), [(signal.SIGTERM, 143, "interrupted by SIGTERM"),
                                                        (signal.SIGINT, 130, "interrupted")])  # fmt: skip
def test_an_interrupt_is_one_line_and_leaves_no_trace(signum, status, said, tmp_path) -> None:
    out = tmp_path / "out"
    command = [sys.executable, "-m", "iftgym", "compare", "--algos", "sft", "--seeds", "2", "--steps", "10000000",
               "--out", str(out)]  # fmt: skip
    # well into training: the command has used the CPU its imports take (it has read its arguments; its rules train
    # in worker processes, so its own CPU grows slowly after that), and a second more has passed (a fixed wait is too
    # short on a loaded machine, where the interrupt would come before the command has read its arguments)
    imports = "import time, iftgym.cli.compare, iftgym.experiments.compare; print(time.process_time())"
    ready = float(subprocess.run([sys.executable, "-c", imports], capture_output=True, text=True, check=True).stdout)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.monotonic() + 120
    while cpu_seconds(process.pid) < ready and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    process.send_signal(signum)
    err = process.communicate(timeout=60)[1]
    assert process.returncode == status and err == f"iftgym: {said}; {out} was left as it was\n"
    assert not out.exists() and not list(tmp_path.iterdir())


# -- plugins that break the contract, settings that would be replaced, long echoes (issue 23) ----------------------
BROKEN_RULES = {
    "shape": ("return loss[:, None].expand(-1, 2), metrics", "its loss is (2, 2), expected one loss per seed"),
    "no-grad": ("return loss.detach(), metrics", "its loss has no gradient"),
    "no-pair": ("return loss", "loss() returned Tensor, expected a (loss, metrics) pair"),
    "text-metric": ("return loss, {'note': 'hello'}", "metric 'note' is not a (2,) or scalar float tensor"),
    "raises": ("raise KeyError('boom')", "rule 'broken' failed at step 1: KeyError: 'boom'"),
    "exits": ("raise SystemExit(0)", "rule 'broken' failed at step 1: SystemExit: 0"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN_RULES))
@pytest.mark.parametrize("command", ["compare", "lm"])
def test_a_plugin_rule_that_breaks_the_contract_is_one_line(kind, command, tmp_path, capsys) -> None:
    body, message = BROKEN_RULES[kind]
    plugin = tmp_path / f"broken_{kind.replace('-', '_')}_{command}.py"
    plugin.write_text("import iftgym\nfrom iftgym.rules.sft import SFT\n\n\nclass Broken(SFT):\n"
                      "    def loss(self, policy, batch, step):\n"
                      "        loss, metrics = super().loss(policy, batch, step)\n"
                      f"        {body}\n\n\niftgym.register_rule('broken', Broken, replace=True)\n")  # fmt: skip
    base = TINY_COMPARE if command == "compare" else [*TINY_LM, "--seeds", "2"]
    algos = "--algos" if command == "compare" else "--algo"
    out = tmp_path / "out"
    try:
        status, err = run([command, *base, "--plugin", str(plugin), algos, "broken", "--out", str(out)], capsys)
    finally:
        from iftgym.rules.registry import RULES

        RULES.unregister("broken")
    assert status == 1 and message in err, err
    assert_one_line(err)
    assert not out.exists() or not (out / "results.json").exists()


def test_a_plugin_that_exits_while_loading_is_an_error(tmp_path, capsys) -> None:
    plugin = tmp_path / "leaves.py"
    plugin.write_text("import sys\nsys.exit(0)\n")
    status, err = run(["compare", *TINY_COMPARE, "--plugin", str(plugin), "--out", str(tmp_path / "out")], capsys)
    assert status == 2 and "plugin" in err and "failed to load: SystemExit" in err
    assert_one_line(err)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--random-maps", "1", "--size", "0"], "size=0 is out of range: expected at least 2"),
        (["--algos", "sft,sb3-ppo", "--sb3-timesteps", "0"], "sb3_timesteps=0 is out of range"),
        (["--set", "ift.lam=0.1", "--set", "ift.lam=0.3", "--algos", "ift"], "--set 'ift.lam' is given twice"),
        (["--algos", "x" * 200_000], "characters cut"),
        (["--task", "sort"], "--task is a setting of world 'tokens', not of 'frozen-lake'"),
        (["--world", "tokens", "--map", "4x4"], "--map is a setting of world 'frozen-lake', not of 'tokens'"),
        (["--world", "nowhere"], "unknown world 'nowhere': expected one of frozen-lake, tokens"),
        (["--world", "tokens", "--no-cache"], "--no-cache is an option of world 'frozen-lake', not of 'tokens'"),
    ],
)
def test_settings_are_never_silently_replaced_and_echoes_are_short(args, message, tmp_path, capsys) -> None:
    status, err = run(["compare", *TINY_COMPARE, *args, "--out", str(tmp_path / "out")], capsys)
    assert status == 2 and message in err, err
    assert_one_line(err) and len(err) < 600
    assert not (tmp_path / "out").exists()


def test_a_fifo_given_as_data_is_refused_without_hanging(tmp_path, capsys) -> None:
    fifo = tmp_path / "data.jsonl"
    os.mkfifo(fifo)
    status, err = run(["lm", "--steps", "2", "--seeds", "1", "--data", str(fifo), "--out", str(tmp_path / "out")],
                      capsys)  # fmt: skip
    assert status == 2 and "not a regular file" in err, err


@pytest.mark.parametrize(
    ("body", "message"),
    [("return TabularPolicy(n_ids, n_actions + 1, seeds=seeds)", "logits_at of one id gave (2, 1, 1, 5)"),
     ("return 'a policy'", "its builder returned str, expected an iftgym.Policy"),
     ("raise SystemExit(3)", "building it failed: SystemExit: 3")],
)  # fmt: skip
def test_a_plugin_policy_kind_that_breaks_the_contract_is_one_line(body, message, tmp_path, capsys) -> None:
    plugin = tmp_path / "broken_kind.py"
    plugin.write_text("from iftgym.policies.registry import register_policy_kind\n"
                      "from iftgym.policies.tabular import TabularPolicy\n\n\n"
                      f"def build(n_ids, n_actions, seeds):\n    {body}\n\n\n"
                      "register_policy_kind('broken', build, replace=True)\n")  # fmt: skip
    from iftgym.policies.registry import POLICY_KINDS

    try:
        status, err = run(["compare", *TINY_COMPARE, "--plugin", str(plugin), "--policy", "broken",
                           "--out", str(tmp_path / "out")], capsys)  # fmt: skip
    finally:
        POLICY_KINDS.unregister("broken")
    assert status == 2 and "policy kind 'broken' breaks the Policy contract" in err and message in err, err
    assert_one_line(err)
    assert not (tmp_path / "out").exists()
