"""One Java virtual machine per process, shared by every env of a Java text-game suite (TextWorldExpress,
ScienceWorld), with a clear error when Java is missing and when the JVM dies.

The suites ship their simulator as a jar driven over py4j. Their own Python classes start one JVM per env
object; here a process starts one JVM per jar, the first time an env of that suite is reset, and every env of the
suite in the process gets its own simulator object (``PythonInterface``) inside that JVM. Eight envs in a
``DummyVecEnv`` therefore cost one JVM, not eight; each ``SubprocVecEnv`` worker, being its own process, starts
its own. A forked child never reuses its parent's JVM (the registry is keyed by process id).

If the JVM dies (killed, out of memory), the call that noticed raises :class:`JVMDiedError`; the next
:meth:`SharedJVM.gateway` starts a fresh JVM, so ``env.reset()`` recovers.
"""

from __future__ import annotations

import collections
import os
import shutil
import threading
from pathlib import Path
from typing import Any

# What to install when no `java` is found, named in JavaNotFoundError.
JAVA_INSTALL_HINT = (
    "install a Java runtime (Java 8 or newer; tested with OpenJDK 17): `sudo apt-get install "
    "openjdk-17-jre-headless` on Debian/Ubuntu, `brew install openjdk@17` on macOS, or `conda install -c "
    "conda-forge openjdk=17`; then check that `java -version` works, or set JAVA_HOME"
)


class JavaNotFoundError(RuntimeError):
    """No ``java`` executable: neither ``$JAVA_HOME/bin/java`` nor one on ``PATH``."""


class JVMDiedError(RuntimeError):
    """The suite's JVM died (or stopped answering) during a call; ``reset()`` starts a new one."""


def find_java() -> str | None:
    """``$JAVA_HOME/bin/java`` if it exists, else ``java`` on ``PATH``, else ``None``."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / ("java.exe" if os.name == "nt" else "java")
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("java")


def require_java(suite: str) -> str:
    """The ``java`` executable to run ``suite`` with.

    :raises JavaNotFoundError: with the package to install.
    """
    java = find_java()
    if java is None:
        raise JavaNotFoundError(
            f"{suite} runs its simulator on the Java virtual machine, and no `java` executable was found "
            f"(JAVA_HOME is {os.environ.get('JAVA_HOME')!r}, and `java` is not on PATH): {JAVA_INSTALL_HINT}"
        )
    return java


def is_jvm_failure(err: BaseException) -> bool:
    """Whether ``err`` is py4j's way of saying that the JVM is gone (not a Java exception inside it)."""
    from py4j.protocol import Py4JError, Py4JJavaError, Py4JNetworkError

    if isinstance(err, (Py4JNetworkError, ConnectionError, BrokenPipeError)):
        return True
    # py4j raises a bare Py4JError("An error occurred while calling ...") when the answer is empty.
    return isinstance(err, Py4JError) and not isinstance(err, Py4JJavaError) and "answer" in str(err).lower()


class SharedJVM:
    """A lazily started JVM running ``jar`` through a py4j gateway, restarted when it has died.

    :param jar: the suite's jar (its ``PythonInterface`` class is on this classpath).
    :param suite: the suite's name, for error messages.
    :param cwd: the JVM's working directory (the suites read data files relative to their package folder).
    :param javaopts: extra JVM options.
    """

    def __init__(self, jar: str, suite: str, cwd: str | None = None, javaopts: tuple[str, ...] = ()) -> None:
        self.jar = jar
        self.suite = suite
        self.cwd = cwd
        self.javaopts = list(javaopts)
        self.generation = 0  # how many JVMs this process has started for the jar; envs compare it
        self.starts = 0
        self._gateway: Any = None
        self._process: Any = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        self._lock = threading.Lock()

    @property
    def process(self) -> Any:
        """The JVM's ``Popen`` object (``None`` before the first start)."""
        return self._process

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def gateway(self) -> Any:
        """The running gateway, starting (or restarting) the JVM when needed.

        :raises JavaNotFoundError: no ``java`` executable.
        :raises RuntimeError: the JVM could not be started (its last stderr lines are quoted).
        """
        with self._lock:
            if self._gateway is not None and self.alive():
                return self._gateway
            self._shutdown()
            java = require_java(self.suite)
            from py4j.java_gateway import GatewayParameters, JavaGateway, launch_gateway

            self._stderr.clear()
            try:
                port, proc = launch_gateway(
                    classpath=self.jar,
                    die_on_exit=True,
                    cwd=self.cwd,
                    javaopts=self.javaopts,
                    java_path=java,
                    redirect_stderr=self._stderr,
                    return_proc=True,
                )
            except Exception as err:
                raise RuntimeError(
                    f"could not start the {self.suite} JVM ({java} -cp {self.jar}): {type(err).__name__}: {err}"
                    f"{self.stderr_tail()}"
                ) from err
            self._gateway = JavaGateway(
                gateway_parameters=GatewayParameters(port=port, auto_field=True), java_process=proc
            )
            self._process = proc
            self.generation += 1
            self.starts += 1
            return self._gateway

    def stderr_tail(self) -> str:
        lines = [line.rstrip() for line in list(self._stderr)[-5:] if line.strip()]
        return (" Last lines on the JVM's stderr: " + " | ".join(lines)) if lines else ""

    def died_error(self, during: str) -> JVMDiedError:
        """The error to raise when a call to the JVM failed because it is gone."""
        code = self._process.poll() if self._process is not None else None
        pid = self._process.pid if self._process is not None else None
        state = f"exited with code {code}" if code is not None else "stopped answering"
        return JVMDiedError(
            f"the {self.suite} JVM (pid {pid}) {state} during {during}; this episode is lost. Call reset() to "
            f"start a new JVM and a new episode.{self.stderr_tail()}"
        )

    def _shutdown(self) -> None:
        gateway, proc = self._gateway, self._process
        self._gateway = self._process = None
        if gateway is not None:
            try:
                gateway.close(keep_callback_server=False, close_callback_server_connections=True)
            except Exception:  # a dead JVM cannot be closed politely
                pass
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    def close(self) -> None:
        """Stop the JVM (the next :meth:`gateway` starts a new one)."""
        with self._lock:
            self._shutdown()


_JVMS: dict[tuple[int, str], SharedJVM] = {}
_JVMS_LOCK = threading.Lock()


def shared_jvm(jar: str, suite: str, cwd: str | None = None, javaopts: tuple[str, ...] = ()) -> SharedJVM:
    """This process's :class:`SharedJVM` for ``jar`` (created on first use; the JVM itself starts lazily)."""
    key = (os.getpid(), jar)
    with _JVMS_LOCK:
        jvm = _JVMS.get(key)
        if jvm is None:
            jvm = _JVMS[key] = SharedJVM(jar, suite, cwd=cwd, javaopts=javaopts)
        return jvm


class SimulatorHandle:
    """One env's simulator object inside a :class:`SharedJVM`, and what happened to it.

    :param jvm: the shared JVM.
    :param make: builds the simulator object from the gateway (e.g. ``lambda g: g.jvm.pkg.PythonInterface()``).
    """

    def __init__(self, jvm: SharedJVM, make: Any) -> None:
        self.jvm = jvm
        self._make = make
        self.server: Any = None
        self.generation = -1  # the JVM generation that `server` lives in
        self.failure: str | None = None  # why the episode was lost; cleared by connect()

    def connect(self) -> bool:
        """Make sure the simulator object lives in a running JVM (starting one if needed); clears a failure.

        :return: ``True`` when a new simulator object was made (its game must be loaded again).
        """
        self.failure = None
        if self.server is not None and self.generation == self.jvm.generation and self.jvm.alive():
            return False
        gateway = self.jvm.gateway()
        self.server = self._make(gateway)
        self.generation = self.jvm.generation
        return True

    def call(self, during: str, method: str, *args: Any) -> Any:
        """``server.method(*args)``; a dead JVM becomes :class:`JVMDiedError` (and is remembered)."""
        if self.failure is not None:
            raise JVMDiedError(self.failure)
        if self.server is None:
            raise RuntimeError("call reset() before step()")
        if self.generation != self.jvm.generation:
            self._lost(f"{during} (another env restarted the JVM after this one died)")
        try:
            return getattr(self.server, method)(*args)
        except Exception as err:
            if is_jvm_failure(err) or not self.jvm.alive():
                self._lost(during, err)
            raise

    def _lost(self, during: str, cause: BaseException | None = None) -> None:
        self.server = None
        self.failure = str(self.jvm.died_error(during))
        raise JVMDiedError(self.failure) from cause
