"""The encoder–decoder head: greedy decoding never reads the target, teacher forcing feeds what it
says, source padding is masked, the decoder is the core's cell family, config errors are clear, and a
tiny reversal task is learned on the CPU in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stm_lab.build import build_datamodule, build_model
from stm_lab.cells import run_core
from stm_lab.errors import ConfigError
from stm_lab.heads import Seq2SeqHead

SYMBOLS = "abcdef"


@pytest.fixture(scope="module")
def reverse_files(tmp_path_factory) -> dict[str, str]:
    """Reverse a string of 2-5 symbols: source "a c f", target "f c a"."""
    g = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("reverse")
    out = {}
    for split, n in (("train", 1200), ("test", 200)):
        lines = ["source\ttarget"]
        for _ in range(n):
            s = [SYMBOLS[i] for i in g.integers(0, len(SYMBOLS), size=g.integers(2, 6))]
            lines.append(f"{' '.join(s)}\t{' '.join(reversed(s))}")
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")
        out[split] = str(folder / f"{split}.tsv")
    return out


def _overrides(files: dict[str, str], *extra: str) -> list[str]:
    return ["data=pairs", "head=seq2seq", f"data.data_files={{train:{files['train']},test:{files['test']}}}",
            "data.min_count=1", "data.val_fraction=0.1", "data.batch_size=32", "cell.hidden_size=24",
            "embedding_dim=8", "head.embedding_dim=8", "trainer.accelerator=cpu", "logger=none",
            "callbacks.progress_bar=null", *extra]


def _parts(make_cfg, files, *extra: str):
    cfg = make_cfg(*_overrides(files, *extra), tiny=False)
    dm = build_datamodule(cfg)
    model = build_model(cfg, dm.spec)
    batch = next(iter(dm.val_dataloader()))
    return model, batch


def _encode(model, batch):
    return run_core(model.core, model.encoder(batch["x"]), batch["length"])


@pytest.mark.parametrize("cell,attention", [("lstm", "none"), ("gru", "dot"), ("rnn", "additive")])
def test_greedy_decoding_never_sees_the_target(make_cfg, reverse_files, cell, attention):
    model, batch = _parts(make_cfg, reverse_files, f"cell={cell}", f"head.attention={attention}")
    model.eval()
    head = model.head
    with torch.no_grad():
        states = _encode(model, batch)
        scores, tokens = head.generate(states, batch)
        before = head(states, batch)
        # Corrupt the target after the encoder: other tokens, other lengths.
        corrupted = dict(batch)
        corrupted["y"] = torch.randint(0, model.spec.output_size, batch["y"].shape)
        corrupted["mask"] = torch.ones_like(batch["mask"])
        again_scores, again_tokens = head.generate(states, corrupted)
        after = head(states, {**batch, "y": corrupted["y"]})
    assert torch.equal(tokens, again_tokens) and torch.equal(scores, again_scores)
    assert torch.equal(before.tokens, after.tokens) and torch.equal(before.preds, after.preds)
    # Tokens are -1 after each sequence's first end of sequence, and the output is aligned with y[mask].
    ended = (tokens == 0).long().cumsum(1) - (tokens == 0).long() > 0
    assert (tokens[ended] == -1).all()
    assert before.tokens.shape == batch["y"][batch["mask"]].shape


def test_padded_source_positions_are_never_read(make_cfg, reverse_files):
    for attention in ("dot", "additive"):
        model, batch = _parts(make_cfg, reverse_files, f"head.attention={attention}")
        model.eval()
        with torch.no_grad():
            states = _encode(model, batch)
            _, tokens = model.head.generate(states, batch)
            scores, _ = model.head.generate(states, batch)
            padded = torch.arange(states.outputs.shape[1])[None, :] >= batch["length"][:, None]
            assert padded.any()
            states.outputs = states.outputs.masked_fill(padded[:, :, None], 1e3)
            scores_after, tokens_after = model.head.generate(states, batch)
        assert torch.equal(tokens, tokens_after) and torch.allclose(scores, scores_after), attention


@pytest.mark.parametrize("attention", ["none", "dot", "additive"])  # additive: always the step loop
def test_full_teacher_forcing_equals_a_plain_step_loop(make_cfg, reverse_files, attention):
    model, batch = _parts(make_cfg, reverse_files, "head.teacher_forcing=1.0", f"head.attention={attention}",
                          "cell.num_layers=2", "head.decoder_size=16")
    model.train()
    head = model.head
    head.drop.p = 0.0
    states = _encode(model, batch)
    fast = head(states, batch).preds  # every sequence forced: one packed call, or the shrinking loop
    memory, state = head.memory(states, batch), head.initial_state(states.final)
    y, mask = batch["y"], batch["mask"]
    token, steps = torch.full((len(y),), 1), []
    for t in range(int(mask.sum(1).max())):
        logits, state = head.step(token, state, memory)
        steps.append(logits)
        token = y[:, t].clamp(min=0)
    loop = torch.stack(steps, 1)[mask[:, :len(steps)]]
    assert torch.allclose(fast, loop, atol=1e-5)


def test_teacher_forcing_ratio_decides_what_is_fed(make_cfg, reverse_files):
    model, batch = _parts(make_cfg, reverse_files, "head.teacher_forcing=0.0")
    model.train()
    model.head.drop.p = 0.0
    states = _encode(model, batch)
    corrupted = {**batch, "y": torch.where(batch["mask"], (batch["y"] + 3) % model.spec.output_size, batch["y"])}
    free = model.head(states, batch).preds
    assert torch.allclose(free, model.head(states, corrupted).preds)  # never fed a target token
    model.head.teacher_forcing = 1.0
    forced = model.head(states, batch).preds
    assert not torch.allclose(forced, model.head(states, corrupted).preds)  # fed the targets


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_decoder_is_the_core_family_with_its_own_size(make_cfg, reverse_files, cell):
    model, batch = _parts(make_cfg, reverse_files, f"cell={cell}", "head.decoder_size=12", "head.decoder_layers=2")
    head = model.head
    assert type(head.decoder) is type(model.core) and head.decoder.hidden_size == 12
    assert head.decoder.num_layers == 2 and head.bridged
    model.train()
    scored = model(batch)
    scored.preds.sum().backward()  # the bridge is on the gradient path
    assert head.bridge.weight.grad is not None and head.bridge.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert model(batch).tokens is not None


def test_config_errors(make_cfg, reverse_files):
    with pytest.raises(ConfigError, match=r"head\.attention"):
        _parts(make_cfg, reverse_files, "head.attention=bahdanau")
    with pytest.raises(ConfigError, match=r"head\.teacher_forcing"):
        _parts(make_cfg, reverse_files, "head.teacher_forcing=1.5")
    from stm_lab import api
    from stm_lab.build import build_head

    node = {"_target_": "stm_lab.heads.Seq2SeqHead", "decoder_size": None, "decoder_layers": None,
            "dropout": None, "embedding_dim": None, "attention": "none", "teacher_forcing": 0.5, "max_length": None}
    from omegaconf import OmegaConf

    from stm_lab.config import conf_dir

    lstm = OmegaConf.to_container(OmegaConf.load(conf_dir() / "cell" / "lstm.yaml"))
    with pytest.raises(ConfigError, match="not a sequence"):  # a task whose answer is not a sequence
        build_head(node, 8, api.task("copy").spec, lstm)
    with pytest.raises(ConfigError, match=r"cell\._target_.*built-in cell"):
        build_head(node, 8, api.task("scan").spec, {"_target_": "torch.nn.Identity"})
    assert isinstance(build_head({"_target_": None}, 8, api.task("scan").spec, lstm), Seq2SeqHead)  # head=auto


def test_a_tiny_reversal_is_learned_in_seconds(make_cfg, reverse_files, tmp_path):
    from stm_lab.run import train

    cfg = make_cfg(*_overrides(reverse_files, "cell.hidden_size=48", "embedding_dim=16", "head.embedding_dim=16",
                               "optimizer.lr=0.01", "trainer.max_epochs=4"), tiny=False)
    summary = train(cfg)
    assert summary["status"] == "completed", summary.get("reason")
    m, floor = summary["metrics"], summary["floor"]
    assert summary["headline"] == "exact_match" and summary["monitor"] == "val/exact_match"
    assert m["test/exact_match"] > 0.6  # chance is ~1e-3; no baseline reaches 0.15
    assert m["test/exact_match"] > 4 * floor["exact_match"]["value"]
    assert summary["chance"]["exact_match"] < 0.01
    assert len(summary["curves"]["test/token_acc_pos"]) == 6  # 5 symbols + <eos>
    assert Path(summary["output_dir"], "summary.json").exists()


def test_mixed_teacher_forcing_equals_a_plain_loop_row_by_row(make_cfg, reverse_files):
    """teacher_forcing=0.5: the loop over sorted, shrinking rows against an unsorted full-width loop
    fed by the same per-sequence draw."""
    model, batch = _parts(make_cfg, reverse_files, "head.teacher_forcing=0.5", "head.attention=additive")
    model.train()
    head = model.head
    head.drop.p = 0.0
    states = _encode(model, batch)
    torch.manual_seed(5)
    preds = head(states, batch).preds
    torch.manual_seed(5)
    forced = torch.rand(len(batch["y"])) < 0.5  # the head's first draw
    assert forced.any() and not forced.all()
    memory, state = head.memory(states, batch), head.initial_state(states.final)
    y, mask = batch["y"], batch["mask"]
    token, steps = torch.full((len(y),), 1), []
    for t in range(int(mask.sum(1).max())):
        logits, state = head.step(token, state, memory)
        steps.append(logits)
        token = torch.where(forced, y[:, t].clamp(min=0), logits.argmax(-1))
    assert torch.allclose(preds, torch.stack(steps, 1)[mask[:, :len(steps)]], atol=1e-5)
