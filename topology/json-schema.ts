/**
 * JSON Schema of the topology file format, generated from the zod schema so editors (the YAML
 * language server reads `# yaml-language-server: $schema=...`) check files the way the loader
 * does. `topology/topology.schema.json` is this output; a test keeps it current, and
 * `p2pemu topo --write-schema` regenerates it.
 */
import { z } from 'zod';
import { TopologyFileSchema } from './schema.ts';

export const SCHEMA_ID = 'https://p2pemu.invalid/topology.schema.json';

/** The schema of what a file may contain (the input side of the transforms). */
export function topologyJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(TopologyFileSchema, {
    io: 'input',
    target: 'draft-2020-12',
    reused: 'ref',
  }) as Record<string, unknown>;
  return { ...schema, $id: SCHEMA_ID, title: 'p2pemu topology file' };
}

/** The text of topology.schema.json: stable key order from the generator, two-space indent. */
export function topologyJsonSchemaText(): string {
  return `${JSON.stringify(topologyJsonSchema(), null, 2)}\n`;
}
