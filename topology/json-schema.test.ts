import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { topologyJsonSchema, topologyJsonSchemaText } from './json-schema.ts';

describe('topology json schema', () => {
  it('topology json schema - topology.schema.json is up to date (regenerate: p2pemu topo --write-schema)', () => {
    const onDisk = readFileSync(new URL('./topology.schema.json', import.meta.url), 'utf8');
    expect(onDisk).toBe(topologyJsonSchemaText());
  });

  it('topology json schema - describes the file as editors read it: input forms, enums, required fields', () => {
    const s = topologyJsonSchema() as { required: string[]; additionalProperties: boolean };
    expect(s.required).toEqual(expect.arrayContaining(['version', 'name', 'hosts']));
    expect(s.additionalProperties).toBe(false);
    const text = topologyJsonSchemaText();
    // Sizes and rates are strings or numbers in the file, whatever the loader turns them into.
    expect(text).toContain('KiB|MiB|GiB');
    expect(text).toContain('Gb\\\\/s');
    expect(text).toContain('"switch-downstream"');
  });
});
