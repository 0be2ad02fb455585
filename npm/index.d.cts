// Types for CommonJS consumers (`require('tally-ec')`): the same declarations as index.d.ts.
export * from './index.js';
