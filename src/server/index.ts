export { buildServer } from './app.ts';
export type { GameopsServer } from './app.ts';
export { httpStatusFor } from './errors.ts';
export type { ErrorBody } from './errors.ts';
export { checkRunSchema, checkResultSchema, findingSchema } from './schemas.ts';
export { UNCONFIGURED_HINT } from './routes/info.ts';
