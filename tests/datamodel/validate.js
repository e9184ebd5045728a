#!/usr/bin/env node
// Validates NDJSON graph objects (from build/graph_dump) against the JupiterOne data model.
//
//   node tests/datamodel/validate.js FILE.ndjson
//
// Entities are checked with the data-model package's own IntegrationSchema (an Ajv instance
// with every class schema and format registered) against the schema of their _class;
// relationships against GraphObject, plus the rules of docs/graph-model.md that no schema
// states: flat properties, explicit keys "<from>|<class lower>|<to>" whose ends exist,
// mapped relationships' _mapping shape, targetEntity of a cve checked as a Vulnerability,
// unique _keys, and every _type of the model present. Exits 1 on any finding.
'use strict';

const fs = require('fs');
const { IntegrationSchema } = require('@jupiterone/data-model');

const file = process.argv[2];
if (!file) {
  console.error('usage: validate.js FILE.ndjson');
  process.exit(2);
}

const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '');
const problems = [];
const bad = (o, msg) => problems.push(`${(o && o._key) || '?'}: ${msg}`);

function validate(id, obj) {
  const v = IntegrationSchema.getSchema(id);
  if (!v) return [`no schema ${id}`];
  if (v(obj)) return [];
  return v.errors.map((e) => `${id}${e.instancePath} ${e.message}` +
    (e.params && e.params.propertyName ? ` (${e.params.propertyName})` : '') +
    (e.params && e.params.allowedValues ? ` ${JSON.stringify(e.params.allowedValues)}` : ''));
}

const isPrim = (v) => ['string', 'number', 'boolean'].includes(typeof v);

// Properties are primitives or arrays of primitives; null only where allowed.
function checkFlat(o, nullable) {
  for (const [k, v] of Object.entries(o)) {
    if (k === '_mapping') continue;
    if (v === null) {
      if (!nullable.includes(k)) bad(o, `property ${k} is null`);
    } else if (Array.isArray(v)) {
      if (!v.every(isPrim)) bad(o, `property ${k} is not an array of primitives`);
    } else if (!isPrim(v)) {
      bad(o, `property ${k} is not flat`);
    }
  }
}

const nullableByClass = {
  HostAgent: ['lastSeenOn'],
  Finding: ['severity', 'numericSeverity'],
};

const objs = lines.map((l, i) => {
  try {
    return JSON.parse(l);
  } catch (e) {
    problems.push(`line ${i + 1}: not JSON: ${e.message}`);
    return null;
  }
}).filter(Boolean);

const keys = new Map();
for (const o of objs) {
  if (keys.has(o._key)) bad(o, 'duplicate _key');
  keys.set(o._key, o);
}

const entities = objs.filter((o) => !('_fromEntityKey' in o) && !('_mapping' in o));
const relationships = objs.filter((o) => '_fromEntityKey' in o || '_mapping' in o);
const entityKeys = new Set(entities.map((e) => e._key));
const counts = {};

for (const e of entities) {
  counts[e._type] = (counts[e._type] || 0) + 1;
  for (const m of validate(`#${e._class}`, e)) bad(e, m);
  checkFlat(e, nullableByClass[e._class] || []);
  if (typeof e.name !== 'string' || typeof e.displayName !== 'string') {
    bad(e, 'name and displayName must be strings');
  }
  if (e._class === 'HostAgent' && 'macAddress' in e) bad(e, 'macAddress on an agent');
}

for (const r of relationships) {
  counts[r._type] = (counts[r._type] || 0) + 1;
  for (const m of validate('#GraphObject', r)) bad(r, m);
  checkFlat(r, []);
  if (r.displayName !== r._class) bad(r, 'displayName is not the class');
  if ('_fromEntityKey' in r) {
    const want = `${r._fromEntityKey}|${r._class.toLowerCase()}|${r._toEntityKey}`;
    if (r._key !== want) bad(r, `_key is not ${want}`);
    for (const end of [r._fromEntityKey, r._toEntityKey]) {
      if (!entityKeys.has(end)) bad(r, `end ${end} is not an entity of this dump`);
    }
    continue;
  }
  const m = r._mapping;
  if (!m || typeof m !== 'object') {
    bad(r, 'no _mapping');
    continue;
  }
  if (m.relationshipDirection !== 'FORWARD') bad(r, 'relationshipDirection is not FORWARD');
  if (!entityKeys.has(m.sourceEntityKey)) bad(r, `source ${m.sourceEntityKey} unknown`);
  if (!Array.isArray(m.targetFilterKeys) || !m.targetFilterKeys.every(
    (f) => Array.isArray(f) && f.every((k) => typeof k === 'string' && k in m.targetEntity))) {
    bad(r, 'targetFilterKeys must name properties of targetEntity');
  }
  const t = m.targetEntity || {};
  checkFlat(t, []);
  for (const msg of validate('#GraphObject', Object.assign({ _key: 'placeholder-key' }, t))) {
    bad(r, `targetEntity: ${msg}`);
  }
  if (t._type === 'cve') {
    for (const msg of validate('#Vulnerability', t)) bad(r, `targetEntity: ${msg}`);
    if (t._key !== t.cveId.toLowerCase()) bad(r, 'cve _key is not the lower-case CVE id');
    if (!r._key.endsWith(`|identified|${t._key}`)) bad(r, 'relationship _key does not end in the CVE');
  }
  if (t._type === 'aws_instance' && m.skipTargetCreation !== true) {
    bad(r, 'aws_instance targets must not be created');
  }
}

const expected = [
  'threatstack_account', 'threatstack_agent', 'threatstack_alert',
  'threatstack_account_has_agent', 'threatstack_agent_identified_alert',
  'threatstack_account_has_alert', 'threatstack_agent_identified_vulnerability',
  'threatstack_agent_protects_aws_instance', 'threatstack_agent_protects_server',
];
for (const t of expected) {
  if (!counts[t]) problems.push(`no object of _type ${t} in the dump`);
}

for (const p of problems) console.error(`INVALID ${p}`);
console.log(`${entities.length} entities, ${relationships.length} relationships, ` +
  `${problems.length} problems; ${JSON.stringify(counts)}`);
process.exit(problems.length ? 1 : 0);
