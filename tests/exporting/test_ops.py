"""The op check: custom ops found in a real graph, judged against the TF Serving version that must load them."""

from __future__ import annotations

import shutil

import pytest
from tensorflow.core.protobuf import saved_model_pb2

from tfmtl.exporting.ops import check_ops, graph_ops
from tfmtl.exporting.verify import reload_in_fresh_process
from tfmtl.exporting.warmup import WARMUP_FILE


def test_the_export_graph_holds_exactly_the_tf_text_ops_of_in_graph_tokenisation(exported) -> None:  # type: ignore[no-untyped-def]
    ops = graph_ops(exported.path)
    assert {"FastWordpieceTokenizeWithOffsets", "RegexSplitWithOffsets", "TFText>RoundRobinTrim"} <= ops
    assert exported.manifest["verification"]["custom_ops"] == sorted(
        {"FastWordpieceTokenizeWithOffsets", "NormalizeUTF8", "RegexSplitWithOffsets", "TFText>RoundRobinTrim"})


def test_a_graph_with_a_custom_op_outside_tf_text_is_rejected(exported, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "with_scann"
    shutil.copytree(exported.path, path)
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    node = proto.meta_graphs[0].graph_def.node.add()
    node.name, node.op = "scann_search", "ScannSearchBatched"  # the op a ScaNN index exports
    (path / "saved_model.pb").write_bytes(proto.SerializeToString())

    report, _ = reload_in_fresh_process(path, path / "assets.extra" / WARMUP_FILE)
    assert "ScannSearchBatched" in report["core_missing"] and "ScannSearchBatched" not in report["tf_text"]
    with pytest.raises(ValueError, match="ScannSearchBatched.*neither core TensorFlow nor TF Text"):
        check_ops(report["core_missing"], report["tf_text"], "2.20")


def test_the_trimmer_op_is_rejected_for_tf_serving_2_19_with_the_remedy(exported) -> None:  # type: ignore[no-untyped-def]
    custom = exported.manifest["verification"]["custom_ops"]
    assert check_ops(custom, custom, "2.20") == "2.20"
    with pytest.raises(ValueError, match=r"TFText>RoundRobinTrim needs TF Serving >= 2.20.*waterfall"):
        check_ops(custom, custom, "2.19")


def test_without_the_trimmer_op_older_servers_pass() -> None:
    ops = ["FastWordpieceTokenizeWithOffsets", "NormalizeUTF8", "RegexSplitWithOffsets"]  # waterfall truncation
    assert check_ops(ops, ops, "2.19") == "2.12"
    with pytest.raises(ValueError, match="FastWordpieceTokenizeWithOffsets needs TF Serving >= 2.12"):
        check_ops(ops, ops, "2.9")


@pytest.mark.parametrize("target", ["2", "two.twenty", "1.15"])
def test_a_bad_or_unsupported_target_is_refused(target: str) -> None:
    with pytest.raises(ValueError, match="TF Serving"):
        check_ops([], [], target)
