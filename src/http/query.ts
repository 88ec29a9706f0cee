/**
 * Query-string schemas shared by the routes. A query value is text: a whole number is checked as
 * digits (no sign, exponent, spaces or hex, which Number() would take), then bounded. The OpenAPI
 * document shows it as the integer it is, so generated clients take a number.
 */
import { z } from 'zod';

/** A whole number in `min..max`, given as decimal digits. */
export function queryInteger(min: number, max: number) {
  return z
    .string()
    .regex(/^\d{1,16}$/, 'must be a whole number')
    .meta({ type: 'integer', minimum: min, maximum: max } as Record<string, unknown>)
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));
}
