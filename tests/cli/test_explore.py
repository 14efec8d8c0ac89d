"""``iftgym explore``: bad input (an unknown explorer, a port in use, a server that cannot start, settings out of
range, no Voila) is one line with exit 2, checked without a browser; the address is printed once the server listens,
and the command stays light to import."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from iftgym.cli import explore, main


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("iftgym: error: "), err
    return err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["explore", "frozen_lake"], "unknown explorer 'frozen_lake': expected one of frozen-lake, tiny-lm, bias"),
        (["explore", "--port", "http"], "argument --port: 'http' is not a port: expected an integer 1-65535"),
        (["explore", "--port", "0"], "'0' is not a port"),
        (["explore", "--seeds", "1"], "seeds=1 is out of range for the frozen-lake explorer: expected an integer"),
        (["explore", "tiny-lm", "--steps", "0"], "steps=0 is out of range for the tiny-lm explorer"),
        (["explore", "bias", "--steps", "2000"], "steps=2000 is out of range for the bias explorer"),
    ],
)
def test_bad_input_is_one_line_with_exit_2(argv, message, capsys) -> None:
    assert main([*argv, "--no-browser"]) == 2
    assert message in _error(capsys)


def test_a_port_in_use_is_refused(capsys, monkeypatch) -> None:
    monkeypatch.setattr(explore, "server_command", _never_called)
    with socket.socket() as taken:
        taken.bind((explore.HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["explore", "--port", str(port), "--no-browser"]) == 2
    assert f"port {port} on 127.0.0.1 is in use: choose another with --port" in _error(capsys)


def test_a_server_that_cannot_start_is_one_line(capsys, monkeypatch) -> None:
    failing = [sys.executable, "-c", "import sys; print('starting'); sys.exit('voila: the template is broken')"]
    monkeypatch.setattr(explore, "server_command", lambda *_: failing)
    assert main(["explore", "--no-browser"]) == 2
    assert "the server could not start (exit status 1): voila: the template is broken" in _error(capsys)


def test_without_voila_the_command_says_how_to_install_it(capsys, monkeypatch) -> None:
    monkeypatch.setattr(explore.importlib.util, "find_spec", lambda name: None)
    assert main(["explore", "--no-browser"]) == 2
    assert "Voila, which is not installed: pip install -e '.[notebooks]'" in _error(capsys)


def test_the_address_is_printed_once_the_server_listens(capsys, monkeypatch) -> None:
    """A stand-in server that listens, then stops: the address was printed, and a server that stops is exit 1."""
    listens = ("import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); "
               "time.sleep(1.5); print('stopped'); sys.exit(3)")  # fmt: skip
    seen = {}

    def command(notebook, port, template="lab"):
        seen.update(notebook=notebook, port=port)
        return [sys.executable, "-c", listens, str(port)]

    monkeypatch.setattr(explore, "server_command", command)
    assert main(["explore", "bias", "--seeds", "3", "--steps", "20", "--no-browser"]) == 1
    out, err = capsys.readouterr()
    assert f"the bias explorer is at http://127.0.0.1:{seen['port']}/ (Ctrl-C to stop)" in out
    assert err == "iftgym: error: the server stopped (exit status 3): stopped\n"


def test_the_page_notebook_builds_the_page_with_the_settings(tmp_path) -> None:
    path = explore.write_page_notebook(tmp_path, "tiny-lm", {"seeds": 1, "steps": 40})
    (cell,) = json.loads(path.read_text())["cells"]
    assert cell["source"].endswith("page('tiny-lm', seeds=1, steps=40)")


def test_the_page_template_reaches_no_cdn(tmp_path) -> None:
    pytest.importorskip("voila")
    name = explore.write_template(tmp_path)
    assert name == "iftgym"
    text = (tmp_path / "voila" / "templates" / "iftgym" / "index.html.j2").read_text()
    assert "extends" in text and "cdn.jsdelivr.net" not in text
    assert {f"--template={name}", "--Voila.port_retries=0"} <= set(explore.server_command(tmp_path, 1, name))


def test_the_template_is_written_without_importing_voila(tmp_path) -> None:
    """Voila's import loads its whole server (seconds): the command only locates its templates, then starts it."""
    pytest.importorskip("voila")
    code = "import sys, pathlib; from iftgym.cli import explore; "
    code += f"explore.write_template(pathlib.Path({str(tmp_path)!r})); print('voila' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_iftgym_help_imports_no_widget_server_or_browser_library() -> None:
    heavy = "('voila', 'ipywidgets', 'selenium', 'torch', 'matplotlib')"
    code = f"import sys; from iftgym.cli import build_parser; build_parser(); print([m for m in {heavy} if m in "
    code += "sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _never_called(*_):
    raise AssertionError("no server may start")


def test_the_readme_s_explore_command_parses() -> None:
    from pathlib import Path

    from iftgym.cli import build_parser

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    block = readme.split("<!-- explore-command -->\n```bash\n", 1)[1].split("```", 1)[0].strip()
    install, command = block.split(" && ")
    assert install == 'pip install -e ".[notebooks]"'
    args = build_parser().parse_args(command.split()[1:])
    assert args.explorer == "frozen-lake" and args.run is explore.run
    for picture in ("browser-frozen-lake", "browser-table", "browser-episode", "browser-bias", "browser-tiny-lm"):
        assert f"(docs/figures/{picture}.png)" in readme and (root / "docs" / "figures" / f"{picture}.png").is_file()
