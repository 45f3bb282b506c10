"""Field rules of the two library manifests, written from their specifications (not from
the generator): a list of the rules a manifest breaks, empty when it passes.

- library.properties: the Arduino library specification, 1.5 format rev. 2.2
  (arduino.github.io/arduino-cli/latest/library-specification), with arduino-lint's
  reading of it for the name's characters.
- library.json: PlatformIO's library.json fields (docs.platformio.org, manifests/library-json).
"""
from __future__ import annotations

import re

ARDUINO_REQUIRED = ("name", "version", "author", "maintainer", "sentence", "paragraph", "category", "url")
ARDUINO_OPTIONAL = ("architectures", "depends", "dot_a_linkage", "includes", "precompiled", "ldflags", "email",
                    "license")
ARDUINO_CATEGORIES = ("Display", "Communication", "Signal Input/Output", "Sensors", "Device Control", "Timing",
                      "Data Storage", "Data Processing", "Other")
# letters, digits, space, _ . -; starts with a letter or digit and holds a letter
ARDUINO_NAME = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9][A-Za-z0-9 _.\-]*$")
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
ARCHITECTURE = re.compile(r"^[a-z0-9_]+$")

PIO_FIELDS = ("$schema", "name", "version", "description", "keywords", "homepage", "repository", "authors", "license",
              "frameworks", "platforms", "headers", "examples", "dependencies", "export", "scripts", "build")
PIO_BUILD_FIELDS = ("flags", "unflags", "includeDir", "srcDir", "srcFilter", "extraScript", "libArchive",
                    "libLDFMode", "libCompatMode")
# a-z, digits and dashes (letters of either case in practice), not at the ends, no "--"
PIO_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?!-))*(?<!-)$")
PIO_FRAMEWORKS = ("arduino", "mbed", "espidf", "stm32cube", "zephyr", "cmsis", "libopencm3", "freertos", "spl")
PIO_PLATFORMS = ("nordicnrf52", "ststm32", "atmelsam", "teensy", "raspberrypi", "espressif32", "nxplpc",
                 "nxpimxrt", "siliconlabsefm32", "native")


def parse_properties(text: str) -> dict:
    fields = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            fields[key.strip()] = value.strip()
    return fields


def library_properties_errors(text: str) -> list:
    fields = parse_properties(text)
    errors = [f"missing {k}" for k in ARDUINO_REQUIRED if not fields.get(k)]
    errors += [f"unknown field {k}" for k in fields if k not in ARDUINO_REQUIRED + ARDUINO_OPTIONAL]
    name = fields.get("name", "")
    if name and (not ARDUINO_NAME.match(name) or len(name) > 63):
        errors.append(f"name {name!r}: letters, digits, space _ . - only, at most 63")
    if name.lower().startswith("arduino"):
        errors.append("names starting with Arduino are reserved")
    if fields.get("version") and not SEMVER.match(fields["version"]):
        errors.append(f"version {fields['version']!r} is not semver")
    if fields.get("category") and fields["category"] not in ARDUINO_CATEGORIES:
        errors.append(f"category {fields['category']!r} not one of the allowed")
    if fields.get("url") and not re.match(r"^https?://", fields["url"]):
        errors.append("url is not a URL")
    archs = [a.strip() for a in fields.get("architectures", "*").split(",")]
    if archs != ["*"] and not all(ARCHITECTURE.match(a) for a in archs):
        errors.append(f"architectures {archs}: * or a comma-separated list of architecture names")
    for key in ("dot_a_linkage", "precompiled"):
        if key in fields and fields[key] not in ("true", "false", "full"):
            errors.append(f"{key} must be true or false")
    return errors


def library_json_errors(manifest: dict) -> list:
    errors = [f"missing {k}" for k in ("name", "version") if not manifest.get(k)]
    errors += [f"unknown field {k}" for k in manifest if k not in PIO_FIELDS]
    name, version = manifest.get("name", ""), manifest.get("version", "")
    if name and (len(name) > 50 or not PIO_NAME.match(name) or re.search(r"[:;/,@<>]", name)):
        errors.append(f"name {name!r}: letters, digits and single dashes inside, at most 50")
    if version and (len(version) > 20 or not SEMVER.match(version)):
        errors.append(f"version {version!r}: semver, at most 20")
    if len(manifest.get("description", "")) > 255:
        errors.append("description longer than 255")
    keywords = manifest.get("keywords", [])
    keywords = keywords.split(",") if isinstance(keywords, str) else keywords
    if any(k.strip() != k.strip().lower() or not re.match(r"^[a-z0-9 \-]+$", k.strip()) for k in keywords):
        errors.append("keywords: lowercase letters, digits, spaces and dashes")
    for key, known in (("frameworks", PIO_FRAMEWORKS), ("platforms", PIO_PLATFORMS)):
        value = manifest.get(key, "*")
        values = [v.strip() for v in value.split(",")] if isinstance(value, str) else value
        if values != ["*"] and not set(values) <= set(known):
            errors.append(f"{key} {values}: * or known names")
    for example in manifest.get("examples", []):
        if not isinstance(example, dict) or not {"name", "base", "files"} <= set(example):
            errors.append(f"example {example!r} lacks name, base or files")
    build = manifest.get("build", {})
    errors += [f"unknown build field {k}" for k in build if k not in PIO_BUILD_FIELDS]
    flags = build.get("flags", [])
    if not isinstance(flags, (str, list)):
        errors.append("build.flags: a string or a list of strings")
    return errors
