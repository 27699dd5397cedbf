"""The demo app: the closed loop on the real data, start to finish, and its HTML report.

    shopflow demo                 # or: python -m demo
    python -m demo --help

It calls the jobs the way a user's orchestrator would, each through its public
`run(settings, options)` (batch.pipeline, batch.train, batch.score, jobs.loop, jobs.fold)
and the stream worker as its own process (stream.worker.spawn). Modules:

  cli           the command line: main(), which gives the demo its own lake, ports and run
  options       DemoOptions and what is derived from them (the cutoff, SHOPFLOW_* variables)
  inputs        the history for batch, the stream to replay, deliberately malformed records
  progress      the stage lines a person watching the demo sees
  run           the stages in order, ending in the report
  stream_stack  the embedded broker and one worker process, replay and waits
  observe       scraping the worker's metrics into a time series
  record        what one run did, as typed data (the report's input, saved as JSON)
  report        the offline HTML page; charts: its plotly figures
"""
