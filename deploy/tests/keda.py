"""Validates the KEDA objects (keda.sh/v1alpha1) in rendered manifests.

kubernetes-validate has no schema for KEDA's kinds (it warns and passes them), so these
are checked here against the `cloudcoil.models.keda` models (generated from KEDA's CRDs):
types, enums and required fields by the models, and every key by a walk that refuses a
key the models do not know (they accept unknown keys themselves).

    python deploy/tests/keda.py RENDERED.yaml...    exit 1 and a line per problem
"""

import sys
import typing

import pydantic
import yaml
from cloudcoil.models.keda import v1alpha1

KINDS = {
    "ScaledObject": v1alpha1.ScaledObject,
    "ScaledJob": v1alpha1.ScaledJob,
    "TriggerAuthentication": v1alpha1.TriggerAuthentication,
    "ClusterTriggerAuthentication": v1alpha1.ClusterTriggerAuthentication,
}


def models_in(annotation):
    """The pydantic models an annotation may hold (through Optional, List, Dict...)."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in models_in(arg)]


def unknown_keys(model, value, path):
    """Paths of keys in `value` that `model` has no field for, recursively."""
    if not isinstance(value, dict):
        return []
    fields = {}
    for name, field in model.model_fields.items():
        fields[field.alias or name] = field
        fields[name] = field
    problems = []
    for key, item in value.items():
        field = fields.get(key)
        if field is None:
            problems.append(f"{path}.{key}: unknown field")
            continue
        for sub in models_in(field.annotation):
            items = item if isinstance(item, list) else [item]
            for i, element in enumerate(items):
                where = f"{path}.{key}[{i}]" if isinstance(item, list) else f"{path}.{key}"
                problems += unknown_keys(sub, element, where)
    return problems


def main(files):
    problems, checked = [], 0
    for file in files:
        with open(file) as f:
            for doc in yaml.safe_load_all(f):
                if not doc or not str(doc.get("apiVersion", "")).startswith("keda.sh/"):
                    continue
                name = f"{file}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}"
                model = KINDS.get(doc.get("kind"))
                if model is None or doc["apiVersion"] != "keda.sh/v1alpha1":
                    problems.append(f"{name}: no schema for {doc['apiVersion']} {doc.get('kind')}")
                    continue
                try:
                    model.model_validate(doc)
                except pydantic.ValidationError as e:
                    problems.append(f"{name}: {e}")
                problems += [f"{name}: {p}" for p in unknown_keys(model, doc, "")]
                checked += 1
    for p in problems:
        print(p)
    print(f"{checked} KEDA objects checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
