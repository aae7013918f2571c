"""The study arms of the training variants (training/schedule.py): parsing, canonical names, unit specs, and the content
hashes: existing arms keep theirs (finished units of earlier studies are reused), new arms' change only with their
settings."""

import pytest

from backsplit.errors import InputError
from backsplit.study.arms import ArmContext, parse_arm, parse_arms, split_arms
from backsplit.study.hashing import stable_hash

CONTEXT = ArmContext(("cyst",), ("tumor", "kidney"))

# Arm.training_json() of the arms that existed before the training variants (git main 3875d02): must not change
EARLIER = {
    "binary": {"dataset": "twin", "recipe": {}, "sampling": None, "initial_lr": None, "pretrained_arm": None,
               "train_context": None},
    "backsplit": {"dataset": "source", "recipe": {}, "sampling": None, "initial_lr": None, "pretrained_arm": None,
                  "train_context": None},
    "finetune": {"dataset": "source", "recipe": {}, "sampling": None, "initial_lr": 1e-3, "pretrained_arm": "binary",
                 "train_context": None},
    "drop:tumor": {"dataset": "derived", "recipe": {"supports": ["kidney"]}, "sampling": None, "initial_lr": None,
                   "pretrained_arm": None, "train_context": None},
}


@pytest.mark.parametrize("name", sorted(EARLIER))
def test_existing_arms_keep_their_training_json_and_hash(name):
    from backsplit.training.schedule import default_differs_from_paper
    arm = parse_arm(name, CONTEXT)
    # arms that train with the default recipe also record how it differs from the paper's (their models differ)
    expected = dict(EARLIER[name], **(default_differs_from_paper() if EARLIER[name]["dataset"] != "twin" else {}))
    assert arm.training_json() == expected
    assert stable_hash(arm.training_json()) == stable_hash(expected)


@pytest.mark.parametrize("text,name,field,value", [
    ("paper", "paper", "loss", "plain"),
    ("lvr", "lvr:1", "loss", "lvr:1"),
    ("lvr:0.5", "lvr:0.5", "loss", "lvr:0.5"),
    ("ramp", "ramp:200", "loss", "ramp:200"),
    ("ramp:100,lvr=0.5", "ramp:100,lvr=0.5", "loss", "ramp:100,lvr=0.5"),
    ("ramp:lvr=1", "ramp:200,lvr=1", "loss", "ramp:200,lvr=1"),
    ("cap", "cap:0.5", "loss", "cap:0.5"),
    ("head", "head", "support_head", 1.0),
    ("head:0.5", "head:0.5", "support_head", 0.5),
    ("finetune:preserve", "finetune:preserve", "head_init", "preserve"),
    ("finetune:preserve,loss=ramp:200", "finetune:preserve,loss=ramp:200", "loss", "ramp:200"),
])
def test_new_arms(text, name, field, value):
    arm = parse_arm(text, CONTEXT)
    assert arm.name == name and getattr(arm, field) == value and arm.training_json()[field] == value


def test_hash_changes_only_with_the_settings():
    def h(text):
        return (stable_hash(parse_arm(text, CONTEXT).training_json()))
    assert h("ramp:200") == h("ramp") != h("ramp:100")
    assert h("head") == h("head:1") != h("head:0.5")
    assert h("finetune:reinit") != h("finetune:preserve") != h("finetune:preserve,loss=ramp:200")
    # 'finetune' follows the train default (ramp:200,lvr=0.5 from the binary model's prediction): the same training
    # as finetune:preserve with the default's loss, hence the same content
    from backsplit.training.schedule import default_differs_from_paper
    finetune = parse_arm("finetune", CONTEXT).training_json()
    assert all(finetune[k] == v for k, v in default_differs_from_paper().items())
    assert h("paper") != h("backsplit")          # the paper's recipe is pinned; 'backsplit' follows the default


def test_the_backsplit_arm_follows_the_train_default_and_its_hash_with_it(monkeypatch):
    from backsplit.training import schedule
    monkeypatch.setitem(schedule.RECIPES, "default", dict(schedule.RECIPES["paper"]))   # a default equal to the paper's
    paper_default = parse_arm("backsplit", CONTEXT)
    assert paper_default.loss is None
    assert stable_hash(paper_default.training_json()) == stable_hash(EARLIER["backsplit"])
    monkeypatch.setitem(schedule.RECIPES, "default", {"support_schedule": "ramp:200,lvr=0.5", "support_head": None,
                                                      "head_init": "preserve"})
    arm = parse_arm("backsplit", CONTEXT)
    assert arm.loss == "ramp:200,lvr=0.5"
    assert stable_hash(arm.training_json()) != stable_hash(EARLIER["backsplit"])   # never reuses a paper-recipe model
    assert parse_arm("paper", CONTEXT).loss == "plain"          # the paper's recipe stays a named arm


def test_arms_list_and_unit_specs():
    arms = parse_arms(split_arms("binary,backsplit,lvr:1,ramp:200,lvr=0.5,head,finetune:preserve"), CONTEXT)
    assert [a.name for a in arms] == ["binary", "backsplit", "lvr:1", "ramp:200,lvr=0.5", "head",
                                      "finetune:preserve"]
    assert len({a.slug for a in arms}) == len(arms)


@pytest.mark.parametrize("text", ["paper:x", "ramp:abc", "head:0", "head:x", "finetune:keep",
                                  "finetune:preserve,lr=1", "cap:2", "lvr:-1"])
def test_refusals_name_the_forms(text):
    with pytest.raises(InputError):
        parse_arm(text, CONTEXT)


def test_arms_need_supports():
    with pytest.raises(InputError, match="support"):
        parse_arm("ramp", ArmContext(("cyst",), ()))
