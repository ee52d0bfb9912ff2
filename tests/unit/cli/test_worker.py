"""`pushstream worker` pass-through: which options belong to faust, which to `faust worker`."""

from pushstream.cli.main import option_value, split_faust_args


def test_top_level_faust_options_go_before_the_worker_command() -> None:
    top, worker = split_faust_args(["--datadir", "d1", "--web-port", "6066", "-l", "info", "--loop=uvloop",
                                    "--web-host", "0.0.0.0", "--debug"])
    assert top == ["--datadir", "d1", "-l", "info", "--loop=uvloop", "--debug"]
    assert worker == ["--web-port", "6066", "--web-host", "0.0.0.0"]


def test_option_value_reads_both_spellings() -> None:
    assert option_value(["--web-port", "7"], "--web-port") == "7"
    assert option_value(["--web-port=8"], "--web-port") == "8"
    assert option_value(["-l", "debug"], "-l", "--loglevel") == "debug"
    assert option_value([], "--web-port") is None
