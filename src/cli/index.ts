export { buildProgram, main } from './main.ts';
export { ExitCode } from './exit.ts';
export { renderRunText, renderRunMarkdown } from './render.ts';
