"""The FIX codec benchmark runs end to end (no timing assertions: numbers
belong to `make bench-fix-codec`)."""

import json

from bench import fix_codec


def test_fix_codec_benchmark_writes_its_report(tmp_path, capsys):
    out = tmp_path / "fix_codec.json"
    fix_codec.main(["--messages", "2000", "--passes", "2", "--output", str(out)])
    result = json.loads(out.read_text())
    for key in ("parse_new_order_us", "encode_execution_report_us", "simplefix_parse_us",
                "simplefix_encode_us"):  # fmt: skip
        assert result[key] > 0
    assert "read a NewOrderSingle" in capsys.readouterr().out
