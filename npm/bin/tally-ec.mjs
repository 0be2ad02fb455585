#!/usr/bin/env node
// The tally-ec command: see `tally-ec --help`.
import { run } from '../cli/main.mjs';

process.exitCode = await run(process.argv);
