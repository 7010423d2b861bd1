"""The exercise checker: a verdict a learner can act on, never a bare assertion."""

import pytest
import torch

from glm3_teach.checks import Case, check, check_value, explain_difference


def merge_reference(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


CASES = [([1, 2, 3, 1, 2], (1, 2), 4), Case(args=([], (1, 2), 4), label="empty")]


def test_a_correct_function_passes_and_says_how_many_cases(capsys):
    result = check("merge", merge_reference, merge_reference, CASES)
    assert result and result.cases_run == 2
    assert "all 2 cases match" in capsys.readouterr().out


def test_a_wrong_function_names_the_input_the_expected_and_the_result(capsys):
    def forgets_to_skip(ids, pair, new_id):
        return [new_id if (a, b) == pair else a for a, b in zip(ids, ids[1:] + [None])]

    result = check("merge", forgets_to_skip, merge_reference, CASES, hint="skip the second id of a merged pair")
    out = capsys.readouterr().out
    assert not result
    assert "case 1 of 2" in out
    assert "input:    [1, 2, 3, 1, 2], (1, 2), 4" in out
    assert "expected: [4, 3, 4]" in out
    assert "got:      [4, 2, 3, 4, 2]" in out
    assert "expected 3 items, got 5" in out
    assert "hint:     skip the second id" in out


def test_an_unwritten_exercise_is_reported_as_not_written_not_as_a_crash(capsys):
    def stub(ids, pair, new_id):
        raise NotImplementedError

    assert not check("merge", stub, merge_reference, CASES)
    assert "not written yet" in capsys.readouterr().out


def test_a_function_that_returns_nothing_is_reported(capsys):
    assert not check("merge", lambda *a: None, merge_reference, CASES)
    assert "returned None" in capsys.readouterr().out


def test_an_exception_in_the_learner_code_is_shown_with_its_input(capsys):
    def crashes(ids, pair, new_id):
        return ids[10]

    assert not check("merge", crashes, merge_reference, CASES)
    out = capsys.readouterr().out
    assert "raised IndexError" in out and "input:" in out


def test_changing_the_input_in_place_is_reported(capsys):
    def doubles_in_place(x):
        return x.mul_(2)

    assert not check("double", doubles_in_place, lambda x: x * 2, [(torch.ones(3),)])
    assert "changed its input in place" in capsys.readouterr().out


def test_tensors_are_compared_by_shape_then_within_tolerance():
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert explain_difference(a, a + 1e-7) is None
    assert "expected shape [2, 2], got shape [4]" in explain_difference(a, a.flatten())
    message = explain_difference(a, a + torch.tensor([[0.0, 0.0], [0.5, 0.0]]))
    assert "index [1, 0]" in message and "expected 3" in message and "got 3.5" in message
    assert "NaN" in explain_difference(a, a * float("nan"))


def test_integer_tensors_must_match_exactly():
    assert "first at index [2]" in explain_difference(torch.tensor([1, 2, 3]), torch.tensor([1, 2, 4]))


def test_check_value_accepts_a_close_float_and_rejects_a_far_one(capsys):
    assert check_value("loss", 2.3025851, 2.302585093)
    assert not check_value("loss", 2.5, 2.302585093, hint="the uniform loss is ln(V)")
    out = capsys.readouterr().out
    assert "expected 2.30259, got 2.5" in out and "ln(V)" in out


def test_check_needs_cases():
    with pytest.raises(ValueError, match="at least one case"):
        check("nothing", len, len, [])


def test_bfloat16_tensors_are_compared_not_crashed_on():
    x = torch.tensor([1.0, 2.0], dtype=torch.bfloat16)
    assert explain_difference(x, x.clone()) is None
    assert "values differ" in explain_difference(x, x + 1)
    result = check("halve", lambda t: t / 2, lambda t: t / 2, [(x,)])
    assert result, result.message


def test_a_module_argument_is_compared_by_its_weights_not_its_identity():
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2)
    inputs = torch.ones(1, 3)

    def run(module, t):
        return module(t)

    def run_and_damage(module, t):
        out = module(t)
        with torch.no_grad():
            module.weight.zero_()
        return out

    assert check("run", run, run, [(layer, inputs)])
    damaged = check("run", run_and_damage, run, [(layer, inputs)])
    assert not damaged and "changed its input in place" in damaged.message and "weight" in damaged.message


def test_a_single_passing_case_is_announced_in_the_singular(capsys):
    assert check("merge", merge_reference, merge_reference, CASES[:1])
    assert "the 1 case matches the reference." in capsys.readouterr().out


def test_a_float_mask_where_a_bool_mask_is_expected_fails_and_says_sdpa_adds_it(capsys):
    def causal(n):
        return torch.ones(n, n, dtype=torch.bool).tril()

    def float_causal(n):
        return torch.ones(n, n).tril()                   # the right values, the wrong meaning

    result = check("causal_mask", float_causal, causal, [(3,)])
    out = capsys.readouterr().out
    assert not result
    assert "expected dtype bool, got float32" in out and "*adds*" in out and "scaled_dot_product_attention" in out
    assert not check("causal_mask", lambda n: causal(n).long(), causal, [(3,)])
    assert "expected dtype bool, got int64" in capsys.readouterr().out


def test_a_different_float_precision_is_a_failure_that_names_both_dtypes():
    x = torch.tensor([1.0, 2.0])
    assert "expected dtype float32, got float64" in explain_difference(x, x.double())
    assert "expected dtype bfloat16, got float32" in explain_difference(x.bfloat16(), x)


def test_a_large_tensor_is_described_by_shape_and_dtype_with_the_first_differences(capsys):
    expected = torch.arange(1000.0).reshape(10, 100)
    got = expected.clone()
    got[3, 7] += 1
    got[9, 99] = -1
    result = check("copy", lambda t: got, lambda t: expected, [Case(args=(expected,), label="a 10 x 100 ramp")])
    out = capsys.readouterr().out
    assert not result and len(out) < 600
    assert "case 1 of 1 (a 10 x 100 ramp)" in out
    assert "tensor [10, 100] float32" in out
    assert "2 of 1000 values differ" in out
    assert "first at index [3, 7]: expected 307.0, got 308.0" in out and "then [9, 99]: expected 999.0, got -1.0" in out


def test_bools_print_as_bools():
    message = explain_difference(torch.tensor([True, False, True]), torch.tensor([True, True, True]))
    assert "expected False, got True" in message
    assert "1.0" not in message
    assert explain_difference(True, 1) == "expected True (a bool), got int 1: return True or False"


def test_an_exception_names_the_line_of_the_learner_code_that_raised_it(capsys):
    def crashes(ids, pair, new_id):
        first = ids[0]
        return ids[first + 10]                           # an index past the end

    check("merge", crashes, merge_reference, CASES)
    out = capsys.readouterr().out
    assert "raised IndexError: list index out of range" in out
    assert "where:    line" in out and "of crashes: return ids[first + 10]" in out


def test_an_exception_inside_a_library_call_points_at_the_learner_line_that_made_it():
    def wrong_shapes(x):
        return x @ torch.ones(4, 2)                      # [3, 5] @ [4, 2] cannot multiply

    result = check("matmul", wrong_shapes, lambda x: x @ torch.ones(5, 2), [(torch.ones(3, 5),)])
    assert not result and "of wrong_shapes: return x @ torch.ones(4, 2)" in result.message


def test_a_zero_dim_tensor_where_a_number_is_expected_suggests_item():
    message = explain_difference(2.5, torch.tensor(2.5))
    assert "expected a Python float (2.5), got tensor(2.5) float32: call `.item()`" in message
    assert explain_difference(2.5, torch.tensor(2.5).item()) is None


def test_the_hint_is_shown_only_after_a_failure(capsys):
    hint = "skip the second id of a merged pair"
    assert check("merge", merge_reference, merge_reference, CASES, hint=hint)

    def stub(ids, pair, new_id):
        raise NotImplementedError

    assert not check("merge", stub, merge_reference, CASES, hint=hint)
    assert hint not in capsys.readouterr().out
    assert not check("merge", lambda ids, pair, new_id: ids, merge_reference, CASES, hint=hint)
    assert hint in capsys.readouterr().out


def test_a_problem_that_only_repeats_expected_and_got_is_not_printed_twice(capsys):
    assert not check("count", lambda text: len(text), lambda text: 5, ["abcdefg"])
    out = capsys.readouterr().out
    assert "expected: 5" in out and "got:      7" in out and "problem" not in out


def test_a_long_list_of_ids_is_shortened_with_its_length():
    message = check("ids", lambda ids: ids[:-1], lambda ids: ids, [(list(range(100)),)]).message
    assert "input:    [0, 1, 2, 3, 4, 5, 6, 7, ... (100 ints)]" in message and "expected 100 items, got 99" in message


def test_forbid_repeated_copies_fails_a_materialised_repeat_and_allows_broadcasting(capsys):
    from glm3_teach.attention import repeat_kv
    from glm3_teach.checks import forbid_repeated_copies

    def copying(q, k):
        return q * repeat_kv(k, 2)

    def broadcasting(q, k):
        return (q.unflatten(1, (k.shape[1], -1)) * k[:, :, None]).flatten(1, 2)

    q, k = torch.randn(1, 4, 3, 2), torch.randn(1, 2, 3, 2)
    assert not check("copying", forbid_repeated_copies(copying, "k"), broadcasting, [(q, k)])
    out = capsys.readouterr().out
    assert "RepeatedCopyError" in out and "holds k 2 times over" in out and "of copying: return q * repeat_kv(k, 2)" in out
    assert check("broadcasting", forbid_repeated_copies(broadcasting, "k"), copying, [(q, k)])


def test_forbid_repeated_copies_names_a_missing_argument():
    from glm3_teach.checks import forbid_repeated_copies

    with pytest.raises(ValueError, match="has no argument"):
        forbid_repeated_copies(lambda q: q, "k")


def test_a_nested_list_of_tensors_is_described_by_shapes_and_repeats_are_counted():
    from glm3_teach.checks import _short

    cache = [(torch.zeros(2, 2, 6, 64), torch.zeros(2, 2, 6, 64)) for _ in range(4)]
    assert _short(cache) == "[4 x (tensor [2, 2, 6, 64] float32, tensor [2, 2, 6, 64] float32)]"


def test_forbid_whole_axis_fails_the_full_score_matrix_and_allows_blocks(capsys):
    from glm3_teach.checks import forbid_whole_axis

    def full(q, k):
        return (q @ k.transpose(-2, -1)).amax(-1)

    def blocks(q, k):
        return torch.stack([(q @ k[..., j:j + 4, :].transpose(-2, -1)).amax(-1) for j in range(0, k.shape[-2], 4)]).amax(0)

    q, k = torch.randn(1, 2, 3, 8), torch.randn(1, 2, 11, 8)
    assert not check("full", forbid_whole_axis(full, "k", -2), blocks, [(q, k)])
    assert "as long as all 11 rows of k" in capsys.readouterr().out
    assert check("blocks", forbid_whole_axis(blocks, "k", -2), full, [(q, k)])


def test_forbid_modules_refuses_the_module_the_exercise_asks_for_and_allows_its_parts(capsys):
    from glm3_teach.checks import forbid_modules

    layer = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU())
    x = torch.randn(2, 3)

    def by_parts(x):
        return layer[1](layer[0](x))

    assert not check("calls it", forbid_modules(lambda x: layer(x), torch.nn.Sequential), by_parts, [(x,)])
    assert "calling Sequential is not allowed here" in capsys.readouterr().out
    assert check("by parts", forbid_modules(by_parts, torch.nn.Sequential), lambda x: layer(x), [(x,)])
    assert layer(x).shape == (2, 3)  # the refusal ends with the call
