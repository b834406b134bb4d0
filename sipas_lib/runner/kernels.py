"""The kernels the runner starts: the ``python3`` kernel of this interpreter, its log, and warm
kernels that the fan-out reuses between units (reset in between instead of restarted)."""

from __future__ import annotations

from pathlib import Path

KERNEL_NAME = "python3"
"""jupyter_client starts ``python -m ipykernel_launcher`` with ``sys.executable`` for it, so the
kernel is this environment's, with nothing registered globally."""

_KERNEL_NOISE = (
    "KeyboardInterrupt caught in kernel",  # jupyter_client interrupts every kernel it shuts down
    "Kernel is running over TCP without encryption",
)


def kernel_manager_class():
    """A kernel manager that writes the kernel's own stdout/stderr to a log file.

    Otherwise every kernel prints start-up and shut-down chatter into the terminal of
    ``sipas report``. The log sits next to the executed notebook (``<name>.kernel.log``) and is
    deleted when it holds nothing but that chatter.
    """
    global _KM_CLASS
    if _KM_CLASS is None:
        from jupyter_client.manager import AsyncKernelManager
        from traitlets import Unicode

        class RunnerKernelManager(AsyncKernelManager):
            kernel_log = Unicode("", config=True, help="file receiving the kernel's stdout/stderr")

            def client(self, **kwargs):
                # remember the clients: nbclient leaves the channels of a kernel it does not own
                # open, so a reused kernel's clients are stopped by the runner (release_clients)
                made = super().client(**kwargs)
                self.__dict__.setdefault("_sipas_clients", []).append(made)
                return made

            def release_clients(self) -> None:
                for made in self.__dict__.pop("_sipas_clients", []):
                    if made.channels_running:
                        made.stop_channels()

            async def _async_launch_kernel(self, kernel_cmd, **kw):
                if self.kernel_log:
                    handle = open(self.kernel_log, "ab")  # the child keeps its own copy of the fd
                    try:
                        kw["stdout"] = handle
                        kw["stderr"] = handle
                        return await super()._async_launch_kernel(kernel_cmd, **kw)
                    finally:
                        handle.close()
                return await super()._async_launch_kernel(kernel_cmd, **kw)

        _KM_CLASS = RunnerKernelManager
    return _KM_CLASS


_KM_CLASS = None


def kernel_config(kernel_log: Path | None = None):
    """Kernel manager settings for the runner's kernels.

    CurveZMQ keys are provisioned when pyzmq supports them (the kernels listen on localhost).
    """
    import zmq
    from traitlets.config import Config

    cfg = Config()
    if zmq.has("curve"):
        cfg.KernelManager.transport_encryption = "auto"
    if kernel_log is not None:
        cfg.RunnerKernelManager.kernel_log = str(kernel_log)
    return cfg


def read_kernel_log(path: Path, delete: bool = True) -> str:
    """The kernel log without the known chatter; deletes the file if nothing else is in it."""
    if not path.exists():
        return ""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    useful = [ln for ln in lines if ln.strip() and not any(noise in ln for noise in _KERNEL_NOISE)]
    if not useful and delete:
        path.unlink()
    return "\n".join(useful)


_RESET_CODE = """\
import sys as _sys
if "matplotlib.pyplot" in _sys.modules:
    _sys.modules["matplotlib.pyplot"].close("all")
get_ipython().reset(new_session=True)  # empties the namespace, In [1] again; modules stay loaded
__import__("gc").collect()
__import__("os").chdir({cwd!r})
"""

#: Marks the line of a :meth:`WarmKernel.call` output that carries the function's result (JSON).
_RESULT_MARK = "\x1esipas-result:"
_CALL_CODE = """\
import importlib as _il, json as _json
_f = getattr(_il.import_module({module!r}), {function!r})
print({mark!r} + _json.dumps(_f(**_json.loads({arguments!r})), default=str))
"""


class KernelCallError(RuntimeError):
    """A function called in a kernel raised: ``ename``, ``evalue`` and the traceback lines."""

    def __init__(self, ename: str, evalue: str, traceback: list[str]) -> None:
        super().__init__(f"{ename}: {evalue}")
        self.ename, self.evalue, self.traceback = ename, evalue, traceback


class WarmKernel:
    """A kernel kept alive across the notebooks and calls of one runner thread.

    Before each notebook the namespace is emptied (``InteractiveShell.reset``, execution count
    back to 1) and figures closed; imported modules stay loaded, which is what saves the time.
    Notebooks must therefore not rely on module-level state they changed themselves (they do
    not: parameters arrive through the parameters cell, results through files).
    """

    def __init__(self, cwd: Path, log: Path) -> None:
        from jupyter_core.utils import run_sync

        self._run_sync = run_sync
        self.log = log
        self.cwd = Path(cwd).resolve()
        log.parent.mkdir(parents=True, exist_ok=True)
        self.km = kernel_manager_class()(kernel_name=KERNEL_NAME, config=kernel_config(log))
        run_sync(self.km.start_kernel)(cwd=str(self.cwd))
        self.broken = False

    def _execute(self, code: str, timeout: float | None, output_hook=None) -> dict:
        """Run ``code`` in the kernel (not stored in its history); the reply's content.

        Polls the kernel while it waits, so a kernel that dies (or a ``timeout`` in seconds) ends the
        wait with a :class:`KernelCallError` instead of a hang.
        """
        import queue
        import time

        async def _run():
            kc = self.km.client()
            kc.start_channels()
            try:
                await kc.wait_for_ready(timeout=60)
                msg_id = kc.execute(code, silent=False, store_history=False)
                deadline = None if timeout is None else time.monotonic() + timeout
                while True:
                    try:
                        msg = await kc.get_iopub_msg(timeout=1)
                    except queue.Empty:
                        if not await self.km.is_alive():
                            self.broken = True
                            raise KernelCallError("DeadKernelError", "the kernel died", []) from None
                        if deadline is not None and time.monotonic() > deadline:
                            self.broken = True
                            raise KernelCallError("TimeoutError", f"no answer within {timeout} s", []) from None
                        continue
                    if msg["parent_header"].get("msg_id") != msg_id:
                        continue
                    if output_hook is not None:
                        output_hook(msg)
                    if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                        break
                while True:
                    reply = await kc.get_shell_msg(timeout=60)
                    if reply["parent_header"].get("msg_id") == msg_id:
                        return reply["content"]
            finally:
                kc.stop_channels()

        return self._run_sync(_run)()

    def reset(self, cwd: Path | None = None) -> None:
        """Empty the namespace before the next notebook and move to ``cwd`` (default: where it started)."""
        content = self._execute(_RESET_CODE.format(cwd=str(Path(cwd).resolve() if cwd else self.cwd)), timeout=60)
        if content["status"] != "ok":
            raise RuntimeError(f"could not reset the kernel: {content.get('evalue')}")

    def call(self, target: str, arguments: dict, timeout: float | None = None):
        """Call ``"package.module:function"`` in the kernel with JSON ``arguments``; its JSON result.

        The kernel keeps what the function imported (the next notebook or call starts warm).

        Raises
        ------
        KernelCallError
            The function raised (its exception name, message and traceback).
        """
        import json

        module, _, function = target.partition(":")
        printed: list[str] = []

        def hook(msg: dict) -> None:
            if msg["msg_type"] == "stream" and msg["content"].get("name") == "stdout":
                printed.append(msg["content"]["text"])

        code = _CALL_CODE.format(module=module, function=function, mark=_RESULT_MARK,
                                 arguments=json.dumps(arguments, default=str))
        content = self._execute(code, timeout=timeout, output_hook=hook)
        if content["status"] != "ok":
            raise KernelCallError(content.get("ename", "Error"), content.get("evalue", ""), content.get("traceback", []))
        text = "".join(printed)
        if _RESULT_MARK not in text:
            raise KernelCallError("RuntimeError", f"{target} returned nothing the runner could read", [])
        return json.loads(text[text.rindex(_RESULT_MARK) + len(_RESULT_MARK):].splitlines()[0])

    def alive(self) -> bool:
        try:
            return not self.broken and bool(self._run_sync(self.km.is_alive)())
        except Exception:
            return False

    def shutdown(self) -> None:
        try:
            self._run_sync(self.km.shutdown_kernel)(now=False)
        except Exception:  # already gone
            pass
        read_kernel_log(self.log)


def ready_kernel(kernel: WarmKernel | None, cwd: Path, log: Path) -> WarmKernel:
    """The thread's kernel, reset for the next notebook and moved to ``cwd``; a fresh one (started in
    ``cwd``) if it died or will not reset."""
    if kernel is not None and kernel.alive():
        try:
            kernel.reset(cwd)
            return kernel
        except Exception:
            pass
    if kernel is not None:
        kernel.shutdown()
    return WarmKernel(cwd, log)


