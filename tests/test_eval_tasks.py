"""Eval plumbing: infill task building, answer normalisation, summaries, AR confidence (tiny model)."""

from __future__ import annotations

import pytest

from diffusion_engine.eval import code_lines, eval_tasks, infill_scores, infill_tasks
from diffusion_engine.eval_extract import summarize


def test_infill_tasks_are_deterministic_held_out_and_well_formed():
    tasks = infill_tasks(6)
    assert tasks == infill_tasks(6) and len(tasks) == 6
    for prompt, missing in tasks:
        assert "\n<MISSING>\n" in prompt and 1 <= len(missing.splitlines()) <= 2 and missing.strip()
    assert eval_tasks("edit", 2)[0][1] is None  # prompt sets without references stay unscored


def test_code_lines_ignore_fences_indentation_and_blank_lines():
    answer = "```python\n        return x + 1\n\n```"
    assert code_lines(answer) == code_lines("    return x + 1") == ["return x + 1"]
    assert code_lines("return x") != code_lines("return x + 1")


def test_infill_scores_credit_a_rewrite_that_contains_the_missing_line():
    rewrite = "```python\ndef f(x):\n    y = x + 1\n    return y\n```"
    scores = infill_scores(rewrite, "    y = x + 1")
    assert scores["exact"] == 0 and scores["contains"] == 1 and scores["similarity"] < 1
    assert infill_scores("y = x + 1", "    y = x + 1") == {"exact": 1, "contains": 1, "similarity": 1}


def row(valid, seconds, accuracy, source="ar"):
    return {"valid": valid, "seconds": seconds, "accuracy": accuracy, "tokens": 10, "forwards": 10}


def test_extract_summary_splits_speed_by_ar_outcome():
    rows = []
    for ar_valid, ar_s, v_s in ((True, 6.0, 2.0), (True, 4.0, 2.0), (False, 18.0, 3.0)):
        v = {**row(True, v_s, 0.5), "source": "ar", "loop_cuts": [] if ar_valid else ["repeated array item"],
             "identical_to_ar": ar_valid}
        rows.append({"ar": row(ar_valid, ar_s, 0.5 if ar_valid else 0.0), "verified": v})
    split = summarize(rows)["verified"]["by_ar_outcome"]
    assert split["ar_valid"]["tasks"] == 2 and split["ar_valid"]["speedup"] == 2.5
    assert split["ar_invalid"]["speedup"] == 6.0 and split["ar_invalid"]["loop_cuts"] == 1
    assert summarize(rows)["verified"]["wall_clock_speedup_vs_ar"] == (28 / 3) / (7 / 3)
    assert summarize(rows)["verified"]["per_task_median_speedup_vs_ar"] == 3.0  # of 3, 2 and 6


def test_extract_summary_compares_with_ar_in_float32_alone():
    rows = [{"ar_float32": row(True, ar_s, 0.5), "verified": {**row(True, v_s, 0.5), "source": "ar"}}
            for ar_s, v_s in ((8.0, 2.0), (3.0, 1.0))]
    verified = summarize(rows)["verified"]
    assert verified["wall_clock_speedup_vs_ar_float32"] == 11 / 3
    assert verified["per_task_median_speedup_vs_ar_float32"] == 3.5
    assert "wall_clock_speedup_vs_ar" not in verified and "by_ar_outcome" not in verified


def test_a_prompts_file_replaces_the_set(tmp_path):
    prompts = tmp_path / "seen.txt"
    prompts.write_text("Write a haiku about dinosaurs.\n\nWhy is photosynthesis important?\n")
    assert eval_tasks("free", 0, prompts) == [("Write a haiku about dinosaurs.", None),
                                               ("Why is photosynthesis important?", None)]
    assert eval_tasks("free", 1, prompts) == [("Write a haiku about dinosaurs.", None)]


def test_ar_top1_is_the_probability_of_the_greedy_choice():
    """On AR's own greedy tokens, its top-1 probability is the probability of the chosen token,
    read at the position that predicts it (prompt end - 1 + i)."""
    import torch

    from diffusion_engine.eval import ar_generate, ar_scores
    from tests.test_smollm2_block import tiny_llama

    model = tiny_llama(0)
    prompt, end_id = [3, 9, 27, 14, 5], 2
    answer = ar_generate(model, prompt, 8, eos=set())[0]
    top1 = ar_scores(model, prompt, answer, end_id)[1]
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=torch.tensor([prompt + answer])).logits[0].float(), -1)
    chosen = [float(probs[len(prompt) - 1 + i, t]) for i, t in enumerate(answer)]
    assert len(top1) == len(answer) == 8
    assert top1 == pytest.approx(chosen, rel=1e-5)
    assert ar_scores(model, prompt, [], end_id)[1] == []
