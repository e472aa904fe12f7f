"""Imported by the demo-corpus forkserver before it forks call-render workers (see
core.democorpus.build.render_calls): imports and warms up everything a render needs except espeak-ng,
so each fresh worker starts in milliseconds with espeak-ng's state pristine."""

from core.democorpus.calls import warm_up

warm_up()
